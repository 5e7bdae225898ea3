# rlvr_library(NAME <target> SRCS <files...> DEPS <targets...>)
#   One static library per folder (or sub-folder) of the tree.
function(rlvr_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(${A_NAME} STATIC ${A_SRCS})
  target_link_libraries(${A_NAME} PUBLIC ${A_DEPS})
endfunction()

# rlvr_test(NAME <name> SRCS <files...> DEPS <targets...> [LABELS unit|cuda|e2e|slow ...]
#           [TIMEOUT seconds])
#   A GoogleTest binary registered with CTest as one test. The working directory is the source
#   root so tests can read tests/fixtures and ../shared/data by relative path; RLVR_SOURCE_DIR and
#   RLVR_BINARY_DIR are also set in the environment.
function(rlvr_test)
  cmake_parse_arguments(A "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT A_LABELS)
    set(A_LABELS unit)
  endif()
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 600)
  endif()
  add_executable(${A_NAME} ${A_SRCS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${A_NAME} COMMAND ${A_NAME} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT}
    ENVIRONMENT "RLVR_SOURCE_DIR=${CMAKE_SOURCE_DIR};RLVR_BINARY_DIR=${CMAKE_BINARY_DIR};OMP_WAIT_POLICY=passive")
endfunction()

# rlvr_fuzzer(NAME <name> SRCS <files...> DEPS <targets...> [CORPUS <dir>])
#   A libFuzzer target, built only with -DRLVR_FUZZ=ON (clang). CORPUS is its committed seed
#   corpus (default: fuzz_corpus/<name without "fuzz_"> next to the CMakeLists.txt, else
#   fuzz_corpus/); tools/run_fuzzers.sh reads the list in <build>/fuzzers.txt.
function(rlvr_fuzzer)
  cmake_parse_arguments(A "" "NAME;CORPUS" "SRCS;DEPS" ${ARGN})
  if(NOT A_CORPUS)
    string(REGEX REPLACE "^fuzz_" "" short ${A_NAME})
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_corpus/${short})
      set(A_CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_corpus/${short})
    else()
      set(A_CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_corpus)
    endif()
  endif()
  if(RLVR_FUZZ)
    file(APPEND ${CMAKE_BINARY_DIR}/fuzzers.txt "${A_NAME} ${A_CORPUS}\n")
    add_executable(${A_NAME} ${A_SRCS})
    target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
    target_link_options(${A_NAME} PRIVATE -fsanitize=fuzzer)
  endif()
endfunction()
