// Package deploy holds what operators deploy beside sessctl: the Grafana
// dashboard (grafana/sessctl.json) and the Prometheus alert rules
// (prometheus/alerts.yml, with their unit tests in
// prometheus/alerts_test.yml). It has no Go code; its tests check the files
// with promtool where it is installed (Debian: apt-get install prometheus).
// proxy's tests check that every metric these files use is served on a
// live /metrics.
package deploy
