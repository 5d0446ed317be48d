# CPU backend sources and tests (included from kernels/CMakeLists.txt).
#
# The kernel is compiled once per instruction set, each translation unit with its own flags; the
# backend picks one at run time (cpu_backend.h), so the library runs on any x86-64.
set(_ragged_cpu_dir ${CMAKE_CURRENT_LIST_DIR})
target_sources(ragged PRIVATE
  ${_ragged_cpu_dir}/cpu_backend.cc
  ${_ragged_cpu_dir}/cpu_kernel_scalar.cc)

set(_ragged_cpu_defs "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  include(CheckCXXSourceCompiles)
  set(_ragged_avx2_flags -mavx2 -mfma -mf16c)
  set(_ragged_avx512_flags ${_ragged_avx2_flags} -mavx512f -mavx512bw -mavx512vl -mavx512dq)
  set(_ragged_avx512bf16_flags ${_ragged_avx512_flags} -mavx512bf16)
  # name, source file, flags variable, an intrinsic the compiler must know.
  foreach(_isa avx2 avx512 avx512bf16)
    string(TOUPPER ${_isa} _ISA)
    if(_isa STREQUAL "avx2")
      set(_probe "__m256 x = _mm256_fmadd_ps(_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()); (void)x;")
    elseif(_isa STREQUAL "avx512")
      set(_probe "__m512 x = _mm512_scalef_ps(_mm512_setzero_ps(), _mm512_setzero_ps()); (void)x;")
    else()
      set(_probe "__m512 x = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)_mm512_setzero_si512(), (__m512bh)_mm512_setzero_si512()); (void)x;")
    endif()
    set(CMAKE_REQUIRED_FLAGS "${_ragged_${_isa}_flags}")
    string(REPLACE ";" " " CMAKE_REQUIRED_FLAGS "${CMAKE_REQUIRED_FLAGS}")
    check_cxx_source_compiles("#include <immintrin.h>\nint main() { ${_probe} return 0; }"
                              RAGGED_CPU_COMPILER_HAS_${_ISA})
    unset(CMAKE_REQUIRED_FLAGS)
    if(RAGGED_CPU_COMPILER_HAS_${_ISA})
      target_sources(ragged PRIVATE ${_ragged_cpu_dir}/cpu_kernel_${_isa}.cc)
      set_source_files_properties(${_ragged_cpu_dir}/cpu_kernel_${_isa}.cc
        TARGET_DIRECTORY ragged PROPERTIES COMPILE_OPTIONS "${_ragged_${_isa}_flags}")
      list(APPEND _ragged_cpu_defs RAGGED_CPU_HAVE_${_ISA}=1)
    endif()
  endforeach()
endif()
set_source_files_properties(${_ragged_cpu_dir}/cpu_backend.cc
  TARGET_DIRECTORY ragged PROPERTIES COMPILE_DEFINITIONS "${_ragged_cpu_defs}")

if(RAGGED_BUILD_TESTS)
  ragged_test(cpu_backend_test ${_ragged_cpu_dir}/cpu_backend_test.cc)
  target_link_libraries(cpu_backend_test PRIVATE ragged_test_util)
endif()
