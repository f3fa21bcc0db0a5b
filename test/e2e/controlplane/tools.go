//go:build tools

// Package tools keeps kube-apiserver's main package in this module's build list, so that go mod tidy
// records every module it needs and build.sh builds it with -mod=readonly.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
