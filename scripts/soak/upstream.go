package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coder/websocket"
)

const (
	apiHost = "api.openai.com"
	realKey = "sk-soak-real-key-00000000000000000"
)

// startUpstream serves a stand-in for api.openai.com on loopback with a
// throwaway CA written to dir/ca.crt: chat completions (JSON, or SSE with
// "stream":true) and WebSocket responses on /v1/responses.
func startUpstream(dir string) (addr, caFile string, stop func(), err error) {
	cert, caPEM, err := throwawayPKI()
	if err != nil {
		return "", "", nil, err
	}
	caFile = filepath.Join(dir, "upstream-ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return "", "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", nil, err
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(standIn),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(l, "", "")
	return l.Addr().String(), caFile, func() { srv.Close() }, nil
}

func standIn(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+realKey {
		http.Error(w, `{"error":{"message":"bad key","type":"invalid_request_error"}}`, http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/v1/responses" {
		serveWS(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if !strings.Contains(string(body), `"stream":true`) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello from the stand-in"}}],"usage":{"prompt_tokens":10,"completion_tokens":5}}`)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	for i := range 30 {
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token %d \"}}]}\n\n", i)
		if fl != nil {
			fl.Flush()
		}
		time.Sleep(5 * time.Millisecond)
	}
	io.WriteString(w, "data: [DONE]\n\n")
}

func serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	for n := 0; ; n++ {
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
		for _, s := range []string{
			fmt.Sprintf(`{"type":"response.created","response":{"id":"resp_%d"}}`, n),
			`{"type":"response.output_text.delta","delta":"hello "}`,
			`{"type":"response.output_text.delta","delta":"world"}`,
			fmt.Sprintf(`{"type":"response.completed","response":{"id":"resp_%d"}}`, n),
		} {
			if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
				return
			}
		}
	}
}

// throwawayPKI returns a leaf for api.openai.com signed by a fresh CA, and
// the CA's PEM.
func throwawayPKI() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "soak upstream CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: apiHost},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{apiHost}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
