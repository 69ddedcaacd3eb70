# bench_sdk_publish: the client SDK's pipelined publish (tse_client_publisher)
# under the same load shape as bench_publish's stream mode, for the issue-5
# comparison (the SDK must reach >= 90 % of the raw PublishStream figure in
# the same run). Included from bench/CMakeLists.txt, so the binary lands
# beside bench_publish in <build>/bench/.
if(TARGET tse_client)
  add_executable(bench_sdk_publish ${CMAKE_CURRENT_LIST_DIR}/bench_sdk_publish.c)
  target_compile_definitions(bench_sdk_publish PRIVATE _POSIX_C_SOURCE=200809L)
  target_compile_options(bench_sdk_publish PRIVATE ${TSE_WARNINGS})
  # tse_generated: the payload is built as a protobuf Struct.
  target_link_libraries(bench_sdk_publish PRIVATE tse_client tse_generated)
endif()
