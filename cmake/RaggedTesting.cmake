# Helpers to declare tests.
#
# ragged_test(NAME SOURCES... [LABELS l...]): a GoogleTest binary run by ctest (one ctest case per
#   TEST/TEST_P, through gtest_discover_tests).
# ragged_mpi_test_binary(NAME SOURCES...): a GoogleTest binary (with its own main, which starts MPI)
#   for ragged_add_mpi_run below.
function(ragged_test name)
  cmake_parse_arguments(ARG "" "" "LABELS" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ragged GTest::gtest GTest::gtest_main)
  if(TARGET ragged_test_util)
    target_link_libraries(${name} PRIVATE ragged_test_util)
  endif()
  gtest_discover_tests(${name} PROPERTIES LABELS "${ARG_LABELS}" DISCOVERY_TIMEOUT 60)
endfunction()

function(ragged_mpi_test_binary name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE ragged GTest::gtest)
endfunction()

# Registers an existing binary to run under mpirun with NP ranks, as one ctest case labelled "mpi"
# (plus LABELS). ARGS go to the binary, MPIEXEC_ARGS to mpirun (e.g. --enable-recovery for tests in
# which a rank dies on purpose). Ranks are oversubscribed and talk over TCP on the loopback
# interface, which works in containers where shared memory transports may not. A "[  FAILED  ]"
# line from any rank fails the case even if mpirun's exit status hides it.
function(ragged_add_mpi_run name binary np)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LABELS;ARGS;MPIEXEC_ARGS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} --oversubscribe --allow-run-as-root
            --mca btl self,tcp --mca btl_tcp_if_include lo ${ARG_MPIEXEC_ARGS}
            $<TARGET_FILE:${binary}> ${ARG_ARGS})
  set_tests_properties(${name} PROPERTIES LABELS "mpi;${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
                       PROCESSORS 2 FAIL_REGULAR_EXPRESSION "\\[  FAILED  \\]")
endfunction()
