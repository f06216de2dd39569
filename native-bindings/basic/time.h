/*
 * time.h: CLOCK_MONOTONIC readings and waits against an absolute deadline
 * (milliseconds on the same clock).
 */
#ifndef UB_TIME_H
#define UB_TIME_H

long long ub_now_ms(void);
long long ub_now_ns(void);
void ub_sleep_ms(long ms);

/* Wait for events on fd until deadline (ub_now_ms() time): 0 when ready, or
 * -1 with errno ETIMEDOUT, EBADF (POLLNVAL) or poll's.  EINTR is retried. */
int ub_wait_fd(int fd, short events, long long deadline);

#endif /* UB_TIME_H */
