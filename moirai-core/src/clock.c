/* Being written. */
typedef int moirai__unused_clock;
