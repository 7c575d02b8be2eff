package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// selfSigned writes a certificate for 127.0.0.1 and its key as dir/tls.crt
// and dir/tls.key and returns a pool trusting it.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "crucible-telemetry test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestWebConfigTLS runs the sidecar with the example web configuration of
// deploy/ beside a self-signed certificate: promtool accepts the file, and
// every endpoint needs TLS and one of its bcrypt users.
func TestWebConfigTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	promtool := needTool(t, "promtool", installPrometheus)
	dir := t.TempDir()
	pool := selfSigned(t, dir)
	example, err := os.ReadFile("deploy/web-config.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "web-config.yml")
	os.WriteFile(cfg, example, 0o600)
	if out, err := exec.Command(promtool, "check", "web-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("promtool check web-config: %v\n%s", err, out)
	}

	addr := freePort(t)
	logs := startProcess(t, binary, "--web.listen-address="+addr, "--storage.path="+filepath.Join(dir, "data"), "--web.config.file="+cfg)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	do := func(method, url, user, pass, body string) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	base := "https://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for do("GET", base+"/-/ready", "prometheus", "change-me", "") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("not ready over TLS\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if code := do("POST", base+"/api/v1/experiments", "app", "change-me", `{"id":"tls","name":"TLS"}`); code != http.StatusCreated {
		t.Fatalf("create over TLS with a user: %d", code)
	}
	for _, tc := range []struct {
		method, path, body string
	}{
		{"GET", "/metrics", ""},
		{"GET", "/api/v1/experiments/tls", ""},
		{"POST", "/api/v1/experiments/tls/events", `{"event_name":"custom","latency_ms":1}`},
		{"GET", "/api/v1/experiments/tls/export?format=jsonl", ""},
		{"GET", "/-/healthy", ""},
	} {
		if code := do(tc.method, base+tc.path, "", "", tc.body); code != http.StatusUnauthorized {
			t.Errorf("%s %s without credentials: %d, want 401", tc.method, tc.path, code)
		}
		if code := do(tc.method, base+tc.path, "app", "wrong", tc.body); code != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong password: %d, want 401", tc.method, tc.path, code)
		}
		if code := do(tc.method, base+tc.path, "app", "change-me", tc.body); code != http.StatusOK {
			t.Errorf("%s %s with the password: %d, want 200", tc.method, tc.path, code)
		}
	}
	// Plain HTTP gets no answer from the TLS listener, and a client that
	// does not trust the certificate is refused by its own TLS check.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("plain HTTP answered %d", resp.StatusCode)
		}
	}
	if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/-/healthy"); err == nil {
		t.Error("a client without the CA connected")
	}
	if !strings.Contains(logs.String(), "TLS is enabled") {
		t.Errorf("the sidecar did not log TLS\n%s", logs)
	}
}

// TestProbesWithWebConfig runs the sidecar container of the Kubernetes
// component with its own arguments plus the example web configuration
// (TLS and basic auth), and makes each of its probes as the kubelet does:
// the scheme, port, path and headers the manifest gives, no certificate
// check, success for 200-399. The probe port serves nothing else.
func TestProbesWithWebConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	var d appsv1.Deployment
	b, err := os.ReadFile("deploy/kubernetes/components/sidecar/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &d); err != nil || len(d.Spec.Template.Spec.InitContainers) != 1 {
		t.Fatalf("sidecar manifest: %v", err)
	}
	c := d.Spec.Template.Spec.InitContainers[0]

	dir := t.TempDir()
	pool := selfSigned(t, dir)
	example, err := os.ReadFile("deploy/web-config.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "web-config.yml")
	os.WriteFile(cfg, example, 0o600)

	// The container's ports become free local ones; the rest of its
	// arguments stay as they are.
	local := map[int32]string{}
	named := map[string]string{}
	for _, p := range c.Ports {
		local[p.ContainerPort] = freePort(t)
		named[p.Name] = local[p.ContainerPort]
	}
	args := []string{"--web.config.file=" + cfg}
	for _, a := range c.Args {
		name, value, _ := strings.Cut(a, "=")
		switch name {
		case "--storage.path":
			value = filepath.Join(dir, "data")
		case "--web.listen-address", "--web.probe-listen-address":
			_, port, _ := net.SplitHostPort(value)
			n, _ := strconv.Atoi(port)
			if local[int32(n)] == "" {
				t.Fatalf("%s: port %s is not a container port", a, port)
			}
			value = local[int32(n)]
		}
		args = append(args, name+"="+value)
	}
	logs := startProcess(t, binary, args...)

	kubelet := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	probe := func(p *corev1.Probe) (int, error) {
		g := p.HTTPGet
		addr := named[g.Port.StrVal]
		if g.Port.StrVal == "" {
			addr = local[g.Port.IntVal]
		}
		scheme := "http"
		if g.Scheme != "" {
			scheme = strings.ToLower(string(g.Scheme))
		}
		req, _ := http.NewRequest("GET", scheme+"://"+addr+g.Path, nil)
		for _, h := range g.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := kubelet.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	ok := func(code int) bool { return code >= 200 && code < 400 }

	deadline := time.Now().Add(30 * time.Second)
	for code, err := probe(c.StartupProbe); !ok(code); code, err = probe(c.StartupProbe) {
		if time.Now().After(deadline) {
			t.Fatalf("the startup probe never succeeded: %d %v\n%s", code, err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for kind, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if code, err := probe(p); !ok(code) {
			t.Errorf("%s probe: %d %v", kind, code, err)
		}
	}

	// The API itself still wants TLS and a password.
	api := "https://" + named["crucible"]
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, user := range []string{"", "app"} {
		req, _ := http.NewRequest("GET", api+"/-/ready", nil)
		if user != "" {
			req.SetBasicAuth(user, "change-me")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[string]int{"": 401, "app": 200}[user]; resp.StatusCode != want {
			t.Errorf("API /-/ready as %q: %d, want %d", user, resp.StatusCode, want)
		}
	}
	for _, path := range []string{"/metrics", "/api/v1/experiments", "/"} {
		resp, err := kubelet.Get("http://" + named["crucible-probes"] + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("the probe port serves %s: %d", path, resp.StatusCode)
		}
	}
}
