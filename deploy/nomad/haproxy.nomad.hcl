# HAProxy in front of the Zigral appliances of zigral.nomad.hcl, without Consul: the backends
# are rendered from Nomad's own service catalogue (nomadService) and HAProxy reloads (SIGUSR2,
# master-worker mode) whenever an appliance comes, goes or moves.
#   cd deploy && nomad job run nomad/haproxy.nomad.hcl     (file() paths are relative to deploy/)
# Fleet address: <client IP>:8080 of the node running it (put your DNS name or L4 balancer there).
# The runtime API is a UNIX socket in the allocation directory: on that client, as root,
#   socat - UNIX-CONNECT:<nomad data_dir>/alloc/<alloc id>/alloc/admin.sock

job "zigral-haproxy" {
  type = "service"

  group "edge" {
    count = 1

    network {
      port "http" {
        static = 8080
        to     = 8080
      }
      port "stats" {
        to = 8404
      }
    }

    service {
      name     = "zigral-haproxy"
      provider = "nomad"
      port     = "stats"

      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "haproxy" {
      driver = "docker"

      config {
        image = "docker.io/library/haproxy:2.6"
        ports = ["http", "stats"]
        args  = ["haproxy", "-f", "/local/haproxy.cfg", "-f", "/local/backends.cfg"]
      }

      env {
        ZIGRAL_HAPROXY_SOCKET = "/alloc/admin.sock"
      }

      # The engine-independent part, shared with Kubernetes (routing rules, errors).
      template {
        data          = file("haproxy/haproxy.cfg")
        destination   = "local/haproxy.cfg"
        change_mode   = "signal"
        change_signal = "SIGUSR2"
      }

      # The servers: one per appliance in each backend, named after the appliance (the tag
      # zigral-<index> of its services). Same backends as deploy/haproxy/gen-backends.sh writes.
      template {
        destination   = "local/backends.cfg"
        change_mode   = "signal"
        change_signal = "SIGUSR2"
        data          = <<-EOT
          {{- range nomadService "zigral-agent" }}{{ scratch.Set (printf "agent-%s" (index .Tags 0)) .Port }}{{ end -}}
          # Rendered by Nomad from the services zigral-http, zigral-viewer, zigral-agent.
          backend be_pool
              balance leastconn
              option httpchk GET /readyz
              http-check expect status 200
              option redispatch 1
              retries 2
              http-error status 503 content-type application/json string "{\"error\":\"fleet_unavailable\",\"detail\":\"no appliance is ready to take new work; try again shortly\"}"
              default-server check inter 5s fall 3 rise 2 weight 100
          {{- range nomadService "zigral-http" }}
          {{- $name := index .Tags 0 }}
              server {{ $name }} {{ .Address }}:{{ .Port }}{{ if scratch.Key (printf "agent-%s" $name) }} agent-check agent-inter 5s agent-port {{ scratch.Get (printf "agent-%s" $name) }}{{ end }}
          {{- end }}

          backend be_control
              use-server %[var(txn.appliance)] if { var(txn.appliance) -m found }
              option httpchk GET /readyz
              http-check expect status 200
              retries 2
              http-error status 503 content-type application/json lf-string "{\"error\":\"appliance_unavailable\",\"appliance\":\"%[var(txn.appliance)]\",\"detail\":\"this appliance is unknown, down or restarting; sessions on it are not reachable\"}"
              default-server check inter 5s fall 3 rise 2 weight 0
          {{- range nomadService "zigral-http" }}
              server {{ index .Tags 0 }} {{ .Address }}:{{ .Port }}
          {{- end }}

          backend be_viewer
              use-server %[var(txn.appliance)] if { var(txn.appliance) -m found }
              option httpchk GET /healthz
              http-check expect status 200
              retries 2
              http-error status 503 content-type application/json lf-string "{\"error\":\"appliance_unavailable\",\"appliance\":\"%[var(txn.appliance)]\",\"detail\":\"this appliance's live view is unknown, down or restarting\"}"
              default-server check inter 5s fall 3 rise 2 weight 0
          {{- range nomadService "zigral-viewer" }}
              server {{ index .Tags 0 }} {{ .Address }}:{{ .Port }}
          {{- end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
