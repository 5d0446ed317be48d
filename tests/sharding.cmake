# Multi-rank tests of the sharded ragged decode (issue 7), run under mpirun on the CPU (MPI).
# One binary; each rank count runs every mesh of that size inside one mpirun (see the test file).
if(NOT RAGGED_WITH_MPI OR NOT TARGET ragged_comm_test_main)
  return()
endif()

ragged_mpi_test_binary(sharding_mpi_test sharding_mpi_test.cc)
target_link_libraries(sharding_mpi_test PRIVATE ragged_comm_test_main ragged_test_util GTest::gmock)
foreach(np 1 2 4 8)
  ragged_add_mpi_run(sharding_mpi_test_np${np} sharding_mpi_test ${np} TIMEOUT 300)
endforeach()
