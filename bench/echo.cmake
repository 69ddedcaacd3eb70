# bench_echo_server: a PublishStream server that answers every request with
# one fixed, pre-encoded response (no decoding, no Redis), to measure gRPC C
# core's own bidi-streaming ceiling on this machine; run by
# bench/run_ceiling.sh. Included from bench/CMakeLists.txt, so the binary
# lands beside bench_publish in <build>/bench/.
add_executable(bench_echo_server ${CMAKE_CURRENT_LIST_DIR}/echo_server.c)
target_compile_definitions(bench_echo_server PRIVATE _POSIX_C_SOURCE=200809L)
target_compile_options(bench_echo_server PRIVATE ${TSE_WARNINGS})
target_link_libraries(bench_echo_server PRIVATE tse_generated PkgConfig::GRPC Threads::Threads)
