//go:build tools

// Package helm pins the helm CLI that the chart tests run (test/e2e/build.sh builds it from
// the `targets` file beside this one). The blank import keeps the module in go.mod.
package helm

import _ "helm.sh/helm/v4/cmd/helm"
