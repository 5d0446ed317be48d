# Tests of the examples (issue 8): each example runs on the CPU with a small configuration and
# checks its own output; error paths give one readable line and a non-zero exit.
if(NOT RAGGED_BUILD_EXAMPLES)
  return()
endif()

set(_ex_run ${CMAKE_CURRENT_SOURCE_DIR}/examples_run.sh)
set(_ex_data ${PROJECT_SOURCE_DIR}/examples/testdata)

# ragged_example_test(NAME ok|fail|fail1 PATTERNS p... COMMAND cmd...)
function(ragged_example_test name expect)
  cmake_parse_arguments(ARG "" "TIMEOUT" "PATTERNS;COMMAND;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_test(NAME ${name} COMMAND bash ${_ex_run} ${expect} ${ARG_PATTERNS} -- ${ARG_COMMAND})
  set_tests_properties(${name} PROPERTIES LABELS "examples;${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
endfunction()

# The single-process decode on the CPU.
ragged_example_test(examples_decode_cpu_bf16 ok
  PATTERNS "largest error .*PASS" "platform cpu" "!FAIL"
  COMMAND $<TARGET_FILE:decode> --platform=cpu --batch=4 --capacity=96 --q_heads=8 --kv_heads=2
          --head_dim=64 --lengths=uniform --iterations=2)
ragged_example_test(examples_decode_cpu_features ok
  PATTERNS "largest error .*lse .*all 5 rows.*PASS" "window \\(20, 0\\)" "soft cap 30"
           "sinks f32\\[8, 2\\]"
  COMMAND $<TARGET_FILE:decode> --platform=auto --dtype=f32 --batch=5 --capacity=64 --q_heads=8
          --kv_heads=2 --head_dim=32 --lengths=offset --window=20,0 --soft_cap=30 --sinks=q_head
          --num_sinks=2 --lse --verify=all --iterations=2)
ragged_example_test(examples_decode_cpu_mqa_f16 ok
  PATTERNS "largest error .*PASS"
  COMMAND $<TARGET_FILE:decode> --platform=cpu --dtype=f16 --batch=3 --capacity=50 --q_heads=8
          --kv_heads=1 --head_dim=16 --lengths=uniform --sinks=shared --iterations=1)
# A step written by NumPy (examples/testdata/make_testdata.py), checked against the reference and
# against NumPy's own float64 result.
ragged_example_test(examples_decode_load_numpy ok
  PATTERNS "largest error .*all 4 rows.*PASS" "vs --expect .*PASS" "lengths +loaded: min 0"
  COMMAND $<TARGET_FILE:decode> --load=${_ex_data}/step --lse --verify=all --iterations=1
          --expect=${_ex_data}/step/expected_output.npy
          --expect_lse=${_ex_data}/step/expected_lse.npy)
add_test(NAME examples_decode_save_replay
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/examples_decode_replay.sh $<TARGET_FILE:decode>)
set_tests_properties(examples_decode_save_replay PROPERTIES LABELS examples TIMEOUT 120)
# The checks can fail: a corrupted output is caught by the reference check and by --expect.
ragged_example_test(examples_decode_detects_wrong_output fail
  PATTERNS "largest error .*FAIL" "decode: error: verification failed"
  COMMAND $<TARGET_FILE:decode> --batch=2 --capacity=32 --q_heads=4 --kv_heads=2 --head_dim=16
          --iterations=1 --verify=all --testonly_corrupt_output)
ragged_example_test(examples_decode_detects_expect_mismatch fail
  PATTERNS "vs --expect .*FAIL" "differs from --expect"
  COMMAND $<TARGET_FILE:decode> --load=${_ex_data}/step --iterations=1 --verify=none
          --testonly_corrupt_output --expect=${_ex_data}/step/expected_output.npy)
# Error paths: one readable line on stderr, non-zero exit.
ragged_example_test(examples_decode_bad_flag fail1
  PATTERNS "Unknown command line flag 'bogus'"
  COMMAND $<TARGET_FILE:decode> --bogus=1)
ragged_example_test(examples_decode_bad_value fail1
  PATTERNS "^decode: error: --dtype: expected f32, f16 or bf16, got \"f64\""
  COMMAND $<TARGET_FILE:decode> --dtype=f64)
ragged_example_test(examples_decode_bad_heads fail1
  PATTERNS "decode: error: .*num_q_heads \\(6\\) must be a multiple of num_kv_heads \\(4\\)"
  COMMAND $<TARGET_FILE:decode> --q_heads=6 --kv_heads=4 --capacity=8 --batch=1)
ragged_example_test(examples_decode_load_conflict fail1
  PATTERNS "--batch cannot be combined with --load"
  COMMAND $<TARGET_FILE:decode> --load=${_ex_data}/step --batch=3)
ragged_example_test(examples_decode_load_missing fail1
  PATTERNS "decode: error: /nonexistent/query.npy: cannot open"
  COMMAND $<TARGET_FILE:decode> --load=/nonexistent)
