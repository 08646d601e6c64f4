/* Shim: the BPF target has no arch asm/ dir; use the generic UAPI one. */
#include <asm-generic/posix_types.h>
