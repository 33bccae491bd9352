/* Being written. */
typedef int moirai__unused_topology_sysfs;
