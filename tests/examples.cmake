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
ragged_example_test(examples_decode_lengths_file ok
  PATTERNS "lengths +file .*lengths.txt: min 0, mean 29.5, max 64" "all 4 rows.*PASS"
  COMMAND $<TARGET_FILE:decode> --batch=4 --capacity=64 --q_heads=4 --kv_heads=2 --head_dim=32
          --lengths=file:${_ex_data}/lengths.txt --verify=all --iterations=1)
ragged_example_test(examples_decode_lengths_file_bad fail1
  PATTERNS "lengths.txt: has 4 rows, --batch is 5"
  COMMAND $<TARGET_FILE:decode> --batch=5 --capacity=64 --lengths=file:${_ex_data}/lengths.txt)
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

# The MPI jobs: decode over a mesh of ranks, the engine, the scaling sweep, several hosts.
if(RAGGED_WITH_MPI)
  set(_ex_mpirun ${MPIEXEC_EXECUTABLE} --oversubscribe --allow-run-as-root --mca btl self,tcp
                 --mca btl_tcp_if_include lo)
  function(ragged_example_mpi_test name expect np)
    cmake_parse_arguments(ARG "" "" "PATTERNS;COMMAND" ${ARGN})
    ragged_example_test(${name} ${expect} PATTERNS ${ARG_PATTERNS}
      COMMAND ${_ex_mpirun} -np ${np} ${ARG_COMMAND} LABELS mpi)
    set_tests_properties(${name} PROPERTIES PROCESSORS 2)
  endfunction()

  ragged_example_mpi_test(examples_decode_mpi_dp2_tp2 ok 4
    PATTERNS "ranks, mesh dp=2,tp=2" "per rank +query bf16\\[2, 4, 32\\], key/value bf16\\[2, 96, 2, 32\\]"
             "largest error .*PASS" "!FAIL"
    COMMAND $<TARGET_FILE:decode> --mesh=dp=2,tp=2 --batch=4 --capacity=96 --q_heads=8
            --kv_heads=4 --head_dim=32 --lengths=uniform --iterations=2)
  ragged_example_mpi_test(examples_decode_mpi_sp_gathered_features ok 4
    PATTERNS "mesh dp=1,sp=2,tp=2" "merges \\(sp\\) +[0-9.]+ ms" "gathers +[0-9.]+ ms"
             "largest error .*lse .*all 3 rows.*PASS"
    COMMAND $<TARGET_FILE:decode> --mesh=dp=1,sp=2,tp=2 --out_spec=gathered --dtype=f32
            --batch=3 --capacity=64 --q_heads=8 --kv_heads=2 --head_dim=32 --lengths=offset
            --window=24,0 --soft_cap=30 --sinks=q_head --num_sinks=2 --lse --verify=all
            --iterations=2)
  ragged_example_mpi_test(examples_decode_mpi_kv_replicated ok 4
    PATTERNS "KV heads replicated" "largest error .*PASS"
    COMMAND $<TARGET_FILE:decode> --mesh=tp=4 --batch=2 --capacity=48 --q_heads=8 --kv_heads=2
            --head_dim=16 --sinks=kv_head --iterations=1)
  ragged_example_mpi_test(examples_decode_mpi_load_numpy ok 2
    PATTERNS "mesh dp=2" "largest error .*all 4 rows.*PASS" "vs --expect .*PASS"
    COMMAND $<TARGET_FILE:decode> --mesh=dp=2 --load=${_ex_data}/step --lse --verify=all
            --iterations=1 --expect=${_ex_data}/step/expected_output.npy
            --expect_lse=${_ex_data}/step/expected_lse.npy)
  ragged_example_mpi_test(examples_decode_mpi_mesh_mismatch fail 2
    PATTERNS "decode \\(rank 0\\): error: --mesh=dp=2,tp=2 has 4 ranks, but the job has 2"
             "decode \\(rank 1\\): error: --mesh=dp=2,tp=2 has 4 ranks, but the job has 2"
    COMMAND $<TARGET_FILE:decode> --mesh=dp=2,tp=2 --iterations=1)
  ragged_example_mpi_test(examples_decode_mpi_detects_wrong_output fail 2
    PATTERNS "decode \\(rank 0\\): error: verification failed"
             "decode \\(rank 1\\): error: rank 0 failed: verification failed"
    COMMAND $<TARGET_FILE:decode> --mesh=tp=2 --batch=2 --capacity=32 --q_heads=4 --kv_heads=2
            --head_dim=16 --iterations=1 --verify=all --testonly_corrupt_output)
  ragged_example_mpi_test(examples_tp_engine ok 4
    PATTERNS "4 ranks = 2 replicas x tp=2" "library splits: 0" "throughput +[0-9.]+ tokens/s"
             "check .*PASS"
    COMMAND $<TARGET_FILE:tp_engine> --tp=2 --layers=2 --hidden=64 --q_heads=4 --kv_heads=2
            --head_dim=16 --ffn=128 --slots=3 --capacity=24 --requests=5)
  ragged_example_mpi_test(examples_tp_engine_gathered_replicated ok 2
    PATTERNS "1 KV heads \\(replicated\\)" "attention output gathered" "check .*PASS"
    COMMAND $<TARGET_FILE:tp_engine> --tp=2 --layers=2 --hidden=64 --q_heads=4 --kv_heads=1
            --head_dim=16 --ffn=128 --slots=2 --capacity=16 --requests=3 --dtype=f32
            --attention_output=gathered --check_layer=1)
  ragged_example_mpi_test(examples_tp_engine_bad_tp fail 2
    PATTERNS "tp_engine \\(rank 0\\): error: --tp=3 does not divide the 2 ranks"
    COMMAND $<TARGET_FILE:tp_engine> --tp=3)

  add_test(NAME examples_scaling
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/examples_scaling.sh $<TARGET_FILE:scaling>)
  set_tests_properties(examples_scaling PROPERTIES LABELS "examples;mpi" TIMEOUT 300
                       PROCESSORS 2)
  # The README's embedding sample, built against the installed package.
  add_test(NAME examples_embed_installed
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/examples_embed.sh ${PROJECT_BINARY_DIR}
            ${PROJECT_SOURCE_DIR} ${MPIEXEC_EXECUTABLE})
  set_tests_properties(examples_embed_installed PROPERTIES LABELS "examples;mpi" TIMEOUT 300
                       PROCESSORS 2 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
  add_test(NAME examples_multinode_netns
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/examples_multinode.sh ${PROJECT_SOURCE_DIR}/scripts
            $<TARGET_FILE:decode>)
  set_tests_properties(examples_multinode_netns PROPERTIES LABELS "examples;mpi;netns"
                       TIMEOUT 300 PROCESSORS 2 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endif()
