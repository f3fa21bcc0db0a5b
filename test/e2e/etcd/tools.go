//go:build tools

// Package tools keeps etcd's main package (the root of go.etcd.io/etcd/server/v3) in this module's
// build list, so that go mod tidy records every module it needs.
package tools

import _ "go.etcd.io/etcd/server/v3"
