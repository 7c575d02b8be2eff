package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const sidecarName = "crucible-telemetry"

// objects are the decoded manifests of one kustomize build.
type objects struct {
	deployments []appsv1.Deployment
	jobs        []batchv1.Job
	services    []corev1.Service
	podMonitors []monitoringv1.PodMonitor
	svcMonitors []monitoringv1.ServiceMonitor
	rules       []monitoringv1.PrometheusRule
	namespaces  []corev1.Namespace
	claims      []corev1.PersistentVolumeClaim
}

// decode strictly decodes YAML documents into the API types: an unknown or
// misspelt field fails.
func decode(t *testing.T, name string, data []byte) objects {
	t.Helper()
	var o objects
	for i, doc := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s #%d: %v", name, i, err)
		}
		var err error
		switch meta.Kind {
		case "Deployment":
			err = strictAppend(&o.deployments, doc)
		case "Job":
			err = strictAppend(&o.jobs, doc)
		case "Service":
			err = strictAppend(&o.services, doc)
		case "Namespace":
			err = strictAppend(&o.namespaces, doc)
		case "PersistentVolumeClaim":
			err = strictAppend(&o.claims, doc)
		case "PodMonitor":
			err = strictAppend(&o.podMonitors, doc)
		case "ServiceMonitor":
			err = strictAppend(&o.svcMonitors, doc)
		case "PrometheusRule":
			err = strictAppend(&o.rules, doc)
		case "Kustomization", "Component":
			err = strictAppend(new([]types.Kustomization), doc)
		default:
			t.Fatalf("%s #%d: unexpected kind %q", name, i, meta.Kind)
		}
		if err != nil {
			t.Fatalf("%s #%d (%s): %v", name, i, meta.Kind, err)
		}
	}
	return o
}

// strictAppend decodes doc into a new element of list.
func strictAppend[T any](list *[]T, doc []byte) error {
	var v T
	err := yaml.UnmarshalStrict(doc, &v)
	*list = append(*list, v)
	return err
}

// TestManifestsDecode: every file under kubernetes/ is valid for its type.
func TestManifestsDecode(t *testing.T) {
	n := 0
	err := filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		decode(t, path, b)
		n++
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("%d manifests, %v", n, err)
	}
}

// build runs kustomize as kubectl kustomize does.
func build(t *testing.T, dir string) objects {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, dir, out)
}

// TestExampleInjectsTheSidecar: the example's Deployment and Job get the
// sidecar with the policies a restricted namespace and a user expect, and
// keep their own containers as they were.
func TestExampleInjectsTheSidecar(t *testing.T) {
	o := build(t, "kubernetes/example")
	if len(o.deployments) != 1 || len(o.jobs) != 1 || len(o.podMonitors) != 1 || len(o.rules) != 1 {
		t.Fatalf("built %d deployments, %d jobs, %d pod monitors, %d rules", len(o.deployments), len(o.jobs), len(o.podMonitors), len(o.rules))
	}
	src := decode(t, "deployment.yaml", read(t, "kubernetes/example/app/deployment.yaml")).deployments[0]
	srcJob := decode(t, "job.yaml", read(t, "kubernetes/example/app/job.yaml")).jobs[0]
	pods := map[string]corev1.PodTemplateSpec{
		"deployment": o.deployments[0].Spec.Template,
		"job":        o.jobs[0].Spec.Template,
	}
	if !reflect.DeepEqual(pods["deployment"].Spec.Containers, src.Spec.Template.Spec.Containers) ||
		!reflect.DeepEqual(pods["job"].Spec.Containers, srcJob.Spec.Template.Spec.Containers) {
		t.Error("the application's containers changed")
	}
	for name, pod := range pods {
		t.Run(name, func(t *testing.T) {
			checkSidecar(t, name, pod)
			sel, err := metav1LabelSelector(o.podMonitors[0].Spec.Selector.MatchLabels)
			if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
				t.Errorf("%s: the PodMonitor does not select the pod (labels %v)", name, pod.Labels)
			}
		})
	}
	ep := o.podMonitors[0].Spec.PodMetricsEndpoints
	if len(ep) != 1 || ep[0].Port == nil || *ep[0].Port != "crucible" || ep[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v", ep)
	}
	if ns := o.namespaces; len(ns) != 1 || ns[0].Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("the example namespace does not enforce the restricted pod security standard: %+v", ns)
	}
}

func metav1LabelSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return labels.Nothing(), nil
	}
	return labels.SelectorFromSet(m), nil
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkSidecar(t *testing.T, name string, pod corev1.PodTemplateSpec) {
	t.Helper()
	var c *corev1.Container
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == sidecarName {
			c = &pod.Spec.InitContainers[i]
		}
	}
	if c == nil {
		t.Fatalf("%s: no %s init container", name, sidecarName)
	}
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("%s: not a native sidecar (restartPolicy %v)", name, c.RestartPolicy)
	}
	// The probes go to the port of --web.probe-listen-address, which has
	// neither TLS nor basic auth, so turning on --web.config.file leaves
	// them working (the root package's TestProbesWithWebConfig runs them).
	probe := func(kind string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "crucible-probes" ||
			(p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP) || len(p.HTTPGet.HTTPHeaders) != 0 {
			t.Errorf("%s: %s probe %+v, want a plain GET %s on port crucible-probes", name, kind, p, path)
		}
	}
	probe("startup", c.StartupProbe, "/-/ready")
	probe("readiness", c.ReadinessProbe, "/-/ready")
	probe("liveness", c.LivenessProbe, "/-/healthy")
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "crucible" && p.ContainerPort == 9477 }) ||
		!slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "crucible-probes" && p.ContainerPort == 9478 }) ||
		!slices.Contains(c.Args, "--web.listen-address=:9477") || !slices.Contains(c.Args, "--web.probe-listen-address=:9478") {
		t.Errorf("%s: ports %+v and args %q do not match", name, c.Ports, c.Args)
	}

	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatalf("%s: no securityContext", name)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0:
		t.Errorf("%s: may run as root", name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allows privilege escalation", name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: writable root filesystem", name)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities %+v", name, sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s: seccomp %+v", name, sc.SeccompProfile)
	}

	req, lim := c.Resources.Requests, c.Resources.Limits
	maxMem := resource.MustParse("1Gi")
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() ||
		req.Memory().Cmp(*lim.Memory()) > 0 || lim.Memory().Cmp(maxMem) > 0 {
		t.Errorf("%s: resources %+v: want small requests and a memory limit above them", name, c.Resources)
	}

	// The data directory is a mounted volume with a size bound.
	var storage string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--storage.path="); ok {
			storage = v
		}
	}
	var volume string
	for _, m := range c.VolumeMounts {
		if m.MountPath == storage {
			volume = m.Name
		}
	}
	if storage == "" || volume == "" {
		t.Fatalf("%s: --storage.path %q is not a mounted volume", name, storage)
	}
	i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == volume })
	if i < 0 {
		t.Fatalf("%s: no volume %s", name, volume)
	}
	v := pod.Spec.Volumes[i]
	if (v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.IsZero()) && v.PersistentVolumeClaim == nil {
		t.Errorf("%s: volume %+v is neither a bounded emptyDir nor a PVC", name, v.VolumeSource)
	}
}

// TestServiceMonitorVariant: the ServiceMonitor component builds a Service
// in front of the sidecars and a ServiceMonitor that selects it.
func TestServiceMonitorVariant(t *testing.T) {
	o := build(t, "kubernetes/example/servicemonitor")
	if len(o.services) != 1 || len(o.svcMonitors) != 1 || len(o.deployments) != 1 || len(o.rules) != 1 || len(o.podMonitors) != 0 {
		t.Fatalf("built %d services, %d service monitors, %d deployments", len(o.services), len(o.svcMonitors), len(o.deployments))
	}
	svc, sm, pod := o.services[0], o.svcMonitors[0], o.deployments[0].Spec.Template
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("the Service does not select the pod: %v vs %v", svc.Spec.Selector, pod.Labels)
	}
	if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
		t.Errorf("the ServiceMonitor does not select the Service")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "crucible" ||
		len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name {
		t.Errorf("ports: service %+v, monitor %+v", svc.Spec.Ports, sm.Spec.Endpoints)
	}
	checkSidecar(t, "deployment", pod)
	for _, ns := range []string{svc.Namespace, sm.Namespace, o.rules[0].Namespace, o.deployments[0].Namespace} {
		if ns != "llm-experiments" {
			t.Errorf("an object in namespace %q", ns)
		}
	}
}

// TestPersistentStorage: the persistent-storage component puts the
// Deployment's data on the claim, writable by the sidecar's group; the Job
// keeps its emptyDir.
func TestPersistentStorage(t *testing.T) {
	o := build(t, "kubernetes/example/persistent")
	if len(o.claims) != 1 || len(o.deployments) != 1 || len(o.jobs) != 1 {
		t.Fatalf("built %d claims, %d deployments, %d jobs", len(o.claims), len(o.deployments), len(o.jobs))
	}
	pod := o.deployments[0].Spec.Template
	checkSidecar(t, "deployment", pod)
	checkSidecar(t, "job", o.jobs[0].Spec.Template)
	i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "crucible-telemetry-data" })
	if i < 0 || pod.Spec.Volumes[i].EmptyDir != nil || pod.Spec.Volumes[i].PersistentVolumeClaim == nil ||
		pod.Spec.Volumes[i].PersistentVolumeClaim.ClaimName != o.claims[0].Name {
		t.Fatalf("data volume %+v, claim %s", pod.Spec.Volumes, o.claims[0].Name)
	}
	if sc := pod.Spec.SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup != 65532 {
		t.Errorf("pod securityContext %+v: the claim is not writable by group 65532", sc)
	}
}

// TestPrometheusRuleMatchesRuleFile: the operator's PrometheusRule holds
// the groups of the plain rule file, rule for rule.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	var plain monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(read(t, "prometheus/crucible.rules.yml"), &plain); err != nil {
		t.Fatal(err)
	}
	op := decode(t, "prometheusrule.yaml", read(t, "kubernetes/components/rules/prometheusrule.yaml")).rules
	if len(op) != 1 || !reflect.DeepEqual(op[0].Spec, plain) {
		t.Fatalf("the PrometheusRule and deploy/prometheus/crucible.rules.yml differ")
	}
	alerts := map[string]bool{}
	for _, g := range plain.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts[r.Alert] = r.Labels["severity"] != "" && r.Annotations["summary"] != "" && r.Annotations["description"] != ""
			}
		}
	}
	for _, want := range []string{"CrucibleSuccessRatioBelowSLA", "CrucibleLatencyP95High", "CrucibleIngestRejections", "CrucibleStorageNearlyFull"} {
		if ok, found := alerts[want]; !found || !ok {
			t.Errorf("alert %s missing or without severity, summary and description", want)
		}
	}
}
