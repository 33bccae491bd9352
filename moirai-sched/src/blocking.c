/* Placeholder until this file is written. */
typedef int moirai__placeholder_blocking_t;
