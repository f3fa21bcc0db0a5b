// Command policy-eval runs a MutatingAdmissionPolicy's mutations on pods with the API server's own
// admission library (k8s.io/apiserver v0.36.3, pkg/admission/plugin/policy/mutating), without a
// server: the policy is compiled the way compilation.go's compilePolicy does, and each mutation is
// applied in order the way dispatcher.go's dispatchOne does (convert back to a typed Pod, default).
// Matching (matchConstraints, bindings), reinvocation and failurePolicy are the server's part and are
// not run here.
//
// Usage: policy-eval <policy.yaml> < pods.json > results.json
// Input is a JSON array of v1 Pods; output is a JSON array of {"pod": <mutated pod>} or {"error": "..."}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/admission"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating/patch"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

type result struct {
	Pod   *corev1.Pod `json:"pod,omitempty"`
	Error string      `json:"error,omitempty"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: policy-eval <policy.yaml> < pods.json")
		os.Exit(2)
	}
	policy, err := readPolicy(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var pods []corev1.Pod
	if err := json.NewDecoder(os.Stdin).Decode(&pods); err != nil {
		fmt.Fprintln(os.Stderr, "pods:", err)
		os.Exit(1)
	}
	compiler, patchers, err := compile(policy)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	out := make([]result, 0, len(pods))
	for i := range pods {
		pod, err := mutate(compiler, patchers, scheme, &pods[i])
		if err != nil {
			out = append(out, result{Error: err.Error()})
		} else {
			out = append(out, result{Pod: pod})
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}

// readPolicy takes the MutatingAdmissionPolicy out of a multi-document YAML file.
func readPolicy(file string) (*admissionregistrationv1.MutatingAdmissionPolicy, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var p admissionregistrationv1.MutatingAdmissionPolicy
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("%s: no MutatingAdmissionPolicy: %w", file, err)
		}
		if p.Kind == "MutatingAdmissionPolicy" {
			return &p, nil
		}
	}
}

// compile follows compilePolicy (mutating/compilation.go), which is unexported; compile errors
// are returned instead of being delayed to invocation.
func compile(policy *admissionregistrationv1.MutatingAdmissionPolicy) (*plugincel.CompositedCompiler, []patch.Patcher, error) {
	opts := plugincel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil, HasAuthorizer: true}
	compiler, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return nil, nil, err
	}
	vars := make([]plugincel.NamedExpressionAccessor, len(policy.Spec.Variables))
	for i, v := range policy.Spec.Variables {
		vars[i] = &validating.Variable{Name: v.Name, Expression: v.Expression}
	}
	// NewExpressions: the environment the API server validates a new policy with.
	compiler.CompileAndStoreVariables(vars, opts, environment.NewExpressions)
	patchOptions := opts
	patchOptions.HasPatchTypes = true
	var patchers []patch.Patcher
	for i, m := range policy.Spec.Mutations {
		switch m.PatchType {
		case admissionregistrationv1.PatchTypeJSONPatch:
			accessor := &patch.JSONPatchCondition{Expression: m.JSONPatch.Expression}
			ev := compiler.CompileMutatingEvaluator(accessor, patchOptions, environment.NewExpressions)
			patchers = append(patchers, patch.NewJSONPatcher(ev))
		default:
			return nil, nil, fmt.Errorf("mutation %d: patchType %q is not supported here", i, m.PatchType)
		}
	}
	return compiler, patchers, nil
}

func mutate(compiler *plugincel.CompositedCompiler, patchers []patch.Patcher, scheme *runtime.Scheme, pod *corev1.Pod) (*corev1.Pod, error) {
	gvk := corev1.SchemeGroupVersion.WithKind("Pod")
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace}}
	ctx := compiler.CreateContext(context.Background())
	var obj runtime.Object = pod.DeepCopy()
	for i, p := range patchers {
		attrs := admission.NewAttributesRecord(obj, nil, gvk, pod.Namespace, pod.Name, gvr, "", admission.Create, &metav1.CreateOptions{}, false, nil)
		vAttrs := &admission.VersionedAttributes{Attributes: attrs, VersionedKind: gvk, VersionedObject: obj}
		req := patch.Request{
			MatchedResource:     gvr,
			VersionedAttributes: vAttrs,
			ObjectInterfaces:    admission.NewObjectInterfacesFromScheme(scheme),
			OptionalVariables:   plugincel.OptionalVariableBindings{},
			Namespace:           ns,
		}
		next, err := p.Patch(ctx, req, celconfig.RuntimeCELCostBudget)
		if err != nil {
			return nil, fmt.Errorf("mutation %d: %w", i, err)
		}
		typed, err := scheme.ConvertToVersion(next, corev1.SchemeGroupVersion)
		if err != nil {
			return nil, fmt.Errorf("mutation %d: %w", i, err)
		}
		obj = typed
	}
	return obj.(*corev1.Pod), nil
}
