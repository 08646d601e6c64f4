/* Shim: bpfel is little-endian; linux/ip.h needs the bitfield order. */
#include <linux/byteorder/little_endian.h>
