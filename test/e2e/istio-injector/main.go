// istio-injector serves Istio's real sidecar injection webhook (istio.io/istio/pkg/kube/inject) over
// HTTPS for mesh-guard's end-to-end suite, so the API server calls the injector a cluster runs, not a
// stand-in.
//
// Its configuration is what the istio-discovery chart puts into the istio-sidecar-injector and istio
// ConfigMaps: the chart is rendered with Istio's own renderer (operator/pkg/render GenerateManifest,
// profile empty + pilot), exactly as pkg/kube/inject/webhook_test.go getInjectionSettings does, from
// the manifests/ folder of the same module version. So the template, the Helm values (global.proxy
// image, ...) and the mesh config (enablePrometheusMerge: true) are the chart defaults of that version.
//
// Every AdmissionReview request it is shown is appended as one JSON line to -record, before Istio
// answers, so tests can assert what Istio saw.
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"istio.io/istio/operator/pkg/render"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/kube/inject"
	"istio.io/istio/pkg/kube/multicluster"
	istiolog "istio.io/istio/pkg/log"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve HTTPS on (port 0: a free port, printed on stdout)")
	certFile := flag.String("tls-cert", "", "PEM certificate file")
	keyFile := flag.String("tls-key", "", "PEM private key file")
	manifests := flag.String("manifests", "", "the manifests/ folder of the istio.io/istio module (holds the chart and its injection-template.yaml)")
	record := flag.String("record", "", "file to append every AdmissionReview request to, one JSON object a line")
	native := flag.Bool("native-sidecars", true, "ENABLE_NATIVE_SIDECARS: istio-proxy as a native sidecar (init container with restartPolicy Always); "+
		"Istio 1.27+ on kubelets >= 1.33 decides so on its own (auto); there are no nodes here to ask")
	flag.Parse()
	// Istio logs to stdout by default; stdout carries only the listening line.
	logOptions := istiolog.DefaultOptions()
	logOptions.OutputPaths, logOptions.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	if err := istiolog.Configure(logOptions); err != nil {
		log.Fatal(err)
	}
	if *certFile == "" || *keyFile == "" || *manifests == "" {
		log.Fatal("-tls-cert, -tls-key and -manifests are required")
	}

	// features reads ENABLE_NATIVE_SIDECARS at package init; the public variable is what the webhook
	// consults (webhook.go NewWebhook and inject). "auto" would ask Nodes of a cluster we do not have.
	features.EnableNativeSidecars = features.NativeSidecarModeDisabled
	if *native {
		features.EnableNativeSidecars = features.NativeSidecarModeEnabled
	}

	mux := http.NewServeMux()
	if err := newWebhook(*manifests, mux); err != nil {
		log.Fatal(err)
	}
	var handler http.Handler = mux
	if *record != "" {
		handler = recording(*record, mux)
	}

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("load TLS key pair: %v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	server := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	// The one line a starter waits for; everything else goes to stderr.
	fmt.Printf("listening on https://%s\n", ln.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		_ = server.Close()
	}()
	if err := server.ServeTLS(ln, "", ""); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// newWebhook renders the chart and registers Istio's /inject handlers on mux.
func newWebhook(manifests string, mux *http.ServeMux) error {
	sets := []string{"installPackagePath=" + manifests, "profile=empty", "components.pilot.enabled=true"}
	rendered, _, err := render.GenerateManifest(nil, sets, false, nil, nil)
	if err != nil {
		return fmt.Errorf("render istio-discovery chart: %v", err)
	}
	var injectorConfig, values, meshYAML string
	for _, set := range rendered {
		for _, m := range set.Manifests {
			if m.GetKind() != "ConfigMap" {
				continue
			}
			data, _ := m.Object["data"].(map[string]any)
			switch m.GetName() {
			case "istio-sidecar-injector":
				injectorConfig, _ = data["config"].(string)
				values, _ = data["values"].(string)
			case "istio":
				meshYAML, _ = data["mesh"].(string)
			}
		}
	}
	if injectorConfig == "" || values == "" || meshYAML == "" {
		return fmt.Errorf("the rendered chart lacks the istio-sidecar-injector or istio ConfigMap")
	}
	meshConfig, err := mesh.ApplyMeshConfig(meshYAML, mesh.DefaultMeshConfig())
	if err != nil {
		return fmt.Errorf("mesh config: %v", err)
	}

	// The file watcher is how istiod reads the mounted ConfigMap; it wants files.
	dir, err := os.MkdirTemp("", "istio-injector-")
	if err != nil {
		return err
	}
	configFile, valuesFile := filepath.Join(dir, "config"), filepath.Join(dir, "values")
	if err := os.WriteFile(configFile, []byte(injectorConfig), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(valuesFile, []byte(values), 0o600); err != nil {
		return err
	}
	watcher, err := inject.NewFileWatcher(configFile, valuesFile)
	if err != nil {
		return err
	}

	store := model.NewFakeStore() // no ProxyConfig resources: the mesh defaults apply
	env := &model.Environment{Watcher: meshwatcher.NewTestWatcher(meshConfig), ConfigStore: store}
	env.SetPushContext(&model.PushContext{ProxyConfigs: model.GetProxyConfigs(store, meshConfig)})
	_, err = inject.NewWebhook(inject.WebhookParameters{
		Watcher:      watcher,
		Env:          env,
		Mux:          mux,
		MultiCluster: multicluster.NewFakeController(),
	})
	return err
}

// recording appends each AdmissionReview's request to path as one JSON line, then lets Istio answer.
func recording(path string, next http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var review struct {
			Request json.RawMessage `json:"request"`
		}
		if json.Unmarshal(body, &review) == nil && len(review.Request) > 0 {
			var line bytes.Buffer
			if json.Compact(&line, review.Request) == nil {
				line.WriteByte('\n')
				mu.Lock()
				err = appendFile(path, line.Bytes())
				mu.Unlock()
				if err != nil {
					log.Printf("record: %v", err)
				}
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

func appendFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
