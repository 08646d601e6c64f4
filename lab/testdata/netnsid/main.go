// Command netnsid prints the network namespace it runs in, as
// "net:[inode]": the lab's tests build it with BuildBinary and run it in
// a namespace, as end-to-end tests run the agents.
package main

import (
	"fmt"
	"os"
)

func main() {
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ns)
}
