/* Being written. */
typedef int moirai__unused_executor_thread;
