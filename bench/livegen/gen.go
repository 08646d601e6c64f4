package livegen

// The object is generated with Debian's clang 14 and committed, as the
// datapath's is (xdp/gen.go): a plain `go build` needs no clang.
//go:generate go tool bpf2go -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I../../xdp/bpf/include" -type gen_config -type count_config livegen bpf/livegen.c
