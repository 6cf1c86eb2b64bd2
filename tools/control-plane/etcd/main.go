// etcd, built from go.etcd.io/etcd/server/v3 at the version go.mod pins: the same entry point
// as the upstream etcd binary, so every etcd flag works.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
