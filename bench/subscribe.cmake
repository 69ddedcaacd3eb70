# bench_subscribe: load generator for Subscribe, on the SDK (delivery latency, the
# drain rate of one subscriber, many concurrent streams); run by
# bench/run_subscribe.sh. Included from bench/CMakeLists.txt, so the binary
# lands beside bench_publish in <build>/bench/.
add_executable(bench_subscribe ${CMAKE_CURRENT_LIST_DIR}/bench_subscribe.c)
target_compile_definitions(bench_subscribe PRIVATE _POSIX_C_SOURCE=200809L)
target_compile_options(bench_subscribe PRIVATE ${TSE_WARNINGS})
target_link_libraries(bench_subscribe PRIVATE tse_client tse_generated Threads::Threads)
