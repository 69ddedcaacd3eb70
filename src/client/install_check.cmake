# install_check.cmake - ctest integration/client_install: installs the SDK
# (component "client") into PREFIX, compiles SOURCE with nothing but
# `pkg-config --cflags --libs tracseq-client`, and runs the program, which
# prints the library version and checks that a publish to a closed port
# fails cleanly with UNAVAILABLE.
#
# cmake -DBUILD_DIR=... -DPREFIX=... -DSOURCE=... -DCC=... -DLIBDIR=...
#       -DSANITIZE=ON|OFF -DTSAN=ON|OFF -P install_check.cmake
file(REMOVE_RECURSE ${PREFIX})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX}
                        --component client
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
foreach(f include/tracseq/client.h ${LIBDIR}/pkgconfig/tracseq-client.pc)
  if(NOT EXISTS ${PREFIX}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

set(ENV{PKG_CONFIG_PATH} ${PREFIX}/${LIBDIR}/pkgconfig)
execute_process(COMMAND pkg-config --cflags --libs tracseq-client
                OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find tracseq-client")
endif()
message(STATUS "pkg-config: ${flags}")
separate_arguments(flags UNIX_COMMAND "${flags}")
set(extra)
# A sanitized library needs its runtime loaded first (a ThreadSanitizer
# runtime pulled in by the library alone crashed in gRPC's first thread).
if(SANITIZE)
  set(extra -fsanitize=address,undefined)
elseif(TSAN)
  set(extra -fsanitize=thread)
endif()
configure_file(${SOURCE} ${PREFIX}/check.c COPYONLY)
execute_process(COMMAND ${CC} -std=c11 -Wall -Werror ${extra} ${PREFIX}/check.c ${flags}
                        -o ${PREFIX}/check
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling against the installed SDK failed")
endif()
set(ENV{LD_LIBRARY_PATH} ${PREFIX}/${LIBDIR})
execute_process(COMMAND ${PREFIX}/check RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the program built on the installed SDK failed (${rc})")
endif()
