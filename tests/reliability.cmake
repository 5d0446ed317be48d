# Reliability (issue 10): numerics tests, replays of the committed fuzz corpora, sanitizer canaries
# and multi-rank fault tests. Included from tests/CMakeLists.txt (tests are on).
set(_ragged_root ${PROJECT_SOURCE_DIR})

# Numerics: NaN/Inf propagation, long rows, 64-bit offsets, one-token rows, large logits; on the
# host platforms, and (the same source, RAGGED_NUMERICS_GPU) on the cuda platform.
ragged_test(numerics_test ${_ragged_root}/kernels/numerics_test.cc)
if(RAGGED_WITH_CUDA)
  ragged_test(numerics_gpu_test ${_ragged_root}/kernels/numerics_test.cc LABELS gpu)
  target_compile_definitions(numerics_gpu_test PRIVATE RAGGED_NUMERICS_GPU=1)
endif()

# ragged_fuzz_replay(NAME SOURCE): the fuzz target fuzz/SOURCE built with fuzz/replay_main.cc
# instead of libFuzzer. ctest runs it on the committed corpus fuzz/corpus/NAME (fuzz_corpus.NAME),
# and on each crash reproducer in fuzz/regressions/NAME as a test of its own
# (fuzz_regression.NAME.FILE), so that an open bug is named by the failing test. In the sanitized
# build these are the crash regression tests.
function(ragged_fuzz_replay name source)
  add_executable(${name}_replay ${_ragged_root}/fuzz/${source} ${_ragged_root}/fuzz/replay_main.cc)
  target_link_libraries(${name}_replay PRIVATE ragged)
  add_test(NAME fuzz_corpus.${name} COMMAND ${name}_replay ${_ragged_root}/fuzz/corpus/${name})
  set_tests_properties(fuzz_corpus.${name} PROPERTIES LABELS "fuzz" TIMEOUT 300)
  file(GLOB _reproducers CONFIGURE_DEPENDS ${_ragged_root}/fuzz/regressions/${name}/*)
  foreach(_file ${_reproducers})
    get_filename_component(_case ${_file} NAME)
    add_test(NAME fuzz_regression.${name}.${_case} COMMAND ${name}_replay ${_file})
    set_tests_properties(fuzz_regression.${name}.${_case} PROPERTIES LABELS "fuzz" TIMEOUT 60)
  endforeach()
endfunction()

ragged_fuzz_replay(attention_args attention_args_fuzzer.cc)
ragged_fuzz_replay(npy npy_fuzzer.cc)
target_sources(npy_replay PRIVATE ${_ragged_root}/examples/npy.cc)
ragged_fuzz_replay(mesh_spec mesh_spec_fuzzer.cc)

# The sanitized build proves that its sanitizers are live: each canary commits one error that
# must be reported (and must not be survived).
if(RAGGED_SANITIZE)
  add_executable(reliability_sanitizer_canary ${_ragged_root}/tests/reliability_sanitizer_canary.cc)
  foreach(_kind heap-buffer-overflow signed-integer-overflow use-after-free leak)
    add_test(NAME sanitizer_canary.${_kind} COMMAND reliability_sanitizer_canary ${_kind})
  endforeach()
  set_tests_properties(sanitizer_canary.heap-buffer-overflow PROPERTIES
    PASS_REGULAR_EXPRESSION "AddressSanitizer: heap-buffer-overflow")
  set_tests_properties(sanitizer_canary.use-after-free PROPERTIES
    PASS_REGULAR_EXPRESSION "AddressSanitizer: heap-use-after-free")
  set_tests_properties(sanitizer_canary.leak PROPERTIES
    PASS_REGULAR_EXPRESSION "LeakSanitizer: detected memory leaks")
  set_tests_properties(sanitizer_canary.signed-integer-overflow PROPERTIES
    PASS_REGULAR_EXPRESSION "runtime error: signed integer overflow")
  set_tests_properties(sanitizer_canary.heap-buffer-overflow sanitizer_canary.use-after-free
                       sanitizer_canary.leak sanitizer_canary.signed-integer-overflow PROPERTIES
    FAIL_REGULAR_EXPRESSION "SURVIVED" LABELS "sanitizer")
endif()

# Faults across ranks at the level of the sharded op (MPI on the CPU): 2 and 4 ranks. The cases in
# which a rank is killed run one per mpirun, under --enable-recovery (the survivors must not be
# killed with it).
if(RAGGED_WITH_MPI AND TARGET ragged_comm_test_main)
  ragged_mpi_test_binary(reliability_fault_test ${_ragged_root}/tests/reliability_fault_test.cc)
  target_link_libraries(reliability_fault_test PRIVATE ragged_comm_test_main
                        ragged_sharding_test_util)
  foreach(np 2 4)
    ragged_add_mpi_run(reliability_fault_np${np} reliability_fault_test ${np} TIMEOUT 300
                       LABELS fault ARGS --gtest_filter=-*RankKilledTest*:AgreeTest.*)
  endforeach()
  # Equivalent specs must not count as a disagreement (a run of its own: it names one open bug).
  ragged_add_mpi_run(reliability_agree_np2 reliability_fault_test 2 TIMEOUT 120 LABELS fault
                     ARGS --gtest_filter=AgreeTest.*)
  ragged_add_mpi_run(reliability_fault_np2_killed_seqmerge reliability_fault_test 2 TIMEOUT 120
                     LABELS fault MPIEXEC_ARGS --enable-recovery
                     ARGS --gtest_filter=*RankKilledTest*/SeqMerge)
  ragged_add_mpi_run(reliability_fault_np4_killed_headgather reliability_fault_test 4 TIMEOUT 120
                     LABELS fault MPIEXEC_ARGS --enable-recovery
                     ARGS --gtest_filter=*RankKilledTest*/HeadGather)
endif()
