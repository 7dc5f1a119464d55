# Sanitizer and fuzzing builds. Included after TandemModule.cmake; every target links
# tandem_settings, so the flags added here reach every library, program and test.
#
#   -DTANDEM_SANITIZE=address,undefined   ASan + UBSan (g++ or clang++)
#   -DTANDEM_SANITIZE=thread              TSan
#   -DTANDEM_FUZZ=ON                      libFuzzer targets under fuzz/ (clang++ only);
#                                         defaults TANDEM_SANITIZE to address,undefined
#
# Every sanitizer report aborts (-fno-sanitize-recover=all), so a test that triggers one
# fails instead of printing and passing.
option(TANDEM_FUZZ "Build the libFuzzer targets under fuzz/ (clang only)" OFF)
set(TANDEM_SANITIZE "" CACHE STRING
    "Comma-separated sanitizers for every target: address,undefined | thread")

if(TANDEM_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TANDEM_FUZZ=ON needs clang++ (libFuzzer): "
                        "configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(TANDEM_SANITIZE STREQUAL "")
    set(TANDEM_SANITIZE "address,undefined" CACHE STRING
        "Comma-separated sanitizers for every target: address,undefined | thread" FORCE)
  endif()
endif()

if(NOT TANDEM_SANITIZE STREQUAL "")
  string(REPLACE "," ";" _tandem_san_list "${TANDEM_SANITIZE}")
  foreach(s IN LISTS _tandem_san_list)
    if(NOT s MATCHES "^(address|undefined|thread|leak)$")
      message(FATAL_ERROR "TANDEM_SANITIZE: unknown sanitizer '${s}' "
                          "(use address,undefined or thread)")
    endif()
  endforeach()
  if("thread" IN_LIST _tandem_san_list AND "address" IN_LIST _tandem_san_list)
    message(FATAL_ERROR "TANDEM_SANITIZE: thread cannot be combined with address")
  endif()
  set(_tandem_san_flags -fsanitize=${TANDEM_SANITIZE} -fno-sanitize-recover=all
                        -fno-omit-frame-pointer -g)
  target_compile_options(tandem_settings INTERFACE ${_tandem_san_flags})
  target_link_options(tandem_settings INTERFACE -fsanitize=${TANDEM_SANITIZE})
  message(STATUS "tandem: sanitizers ${TANDEM_SANITIZE}")
endif()

if(TANDEM_FUZZ)
  # Coverage feedback in every library; the fuzz targets add -fsanitize=fuzzer at link.
  target_compile_options(tandem_settings INTERFACE -fsanitize=fuzzer-no-link)
  target_link_options(tandem_settings INTERFACE -fsanitize=fuzzer-no-link)
endif()
