/*
 * tsan.h - telling ThreadSanitizer about a hand-off it cannot see.
 *
 * A gRPC completion queue hands a tag from the thread that gives it to gRPC
 * (grpc_call_start_batch, grpc_server_request_call) to the thread that gets
 * it back from grpc_completion_queue_next: gRPC guarantees that everything
 * the first did before happens before the second sees the tag. gRPC as the
 * distributions ship it is not built with -fsanitize=thread, so TSan sees no
 * such edge and reports the tag's owner (the call) as raced. tse_tsan_release
 * (tag) just before giving a tag to gRPC and tse_tsan_acquire(tag) once it is
 * back draw the edge gRPC provides. Without TSan both are nothing.
 */
#ifndef TSE_COMMON_TSAN_H
#define TSE_COMMON_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define TSE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSE_TSAN 1
#endif
#endif

#ifdef TSE_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tse_tsan_acquire(addr) __tsan_acquire((void *)(addr))
#define tse_tsan_release(addr) __tsan_release((void *)(addr))
#else
#define tse_tsan_acquire(addr) ((void)(addr))
#define tse_tsan_release(addr) ((void)(addr))
#endif

#endif
