# Zigral appliances on Nomad: N VMs under the QEMU task driver, one allocation each.
#   nomad var put nomad/jobs/zigral admin_password=@admin.pw fleet_keys=@fleet_keys \
#     fleet_users=@fleet_users fleet_members='zigral-{0..15}'   (one line each; deploy/README.md)
#   nomad job run deploy/nomad/zigral.nomad.hcl
#   nomad job scale zigral appliance 5
# Appliance name = "zigral-<allocation index>" (zigral-0, zigral-1, ...): handed to the VM and
# put in the services' tags, from which HAProxy names its servers (haproxy.nomad.hcl).
#
# Client requirements: qemu-system-x86_64 on the client, the qemu plugin allowing the image
# path and these arguments, e.g. in the client's configuration:
#   plugin "qemu" {
#     config {
#       image_paths    = ["/opt/zigral/images"]   # only if images come from outside the alloc dir
#       args_allowlist = ["-smp", "-fw_cfg", "-snapshot"]
#     }
#   }
# The QEMU driver uses user-mode networking: each labelled port below is a host port forwarded
# to the guest port in port_map (hostfwd), so HAProxy reaches <client IP>:<host port>.

job "zigral" {
  type = "service"

  # One appliance at a time; an appliance counts as healthy when its checks pass. A new job
  # version restarts VMs (their desktops end): drain first, see deploy/README.md "Roll an update".
  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "30s"
    healthy_deadline = "10m"
    auto_revert      = true
  }

  group "appliance" {
    count = 3

    network {
      port "http" {}
      port "viewer" {}
      port "agent" {}
    }

    # Control plane. Ready = /readyz answers 200.
    service {
      name     = "zigral-http"
      provider = "nomad"
      port     = "http"
      tags     = ["zigral-${NOMAD_ALLOC_INDEX}"]

      check {
        name     = "readyz"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # Viewer proxy (noVNC WebSocket); it answers /healthz.
    service {
      name     = "zigral-viewer"
      provider = "nomad"
      port     = "viewer"
      tags     = ["zigral-${NOMAD_ALLOC_INDEX}"]

      check {
        name     = "viewer-healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # Capacity agent for HAProxy's agent-check: the control plane's agent_listen, which the
    # image sets to port 8001. One line per connection: "N%" (free desktop slots), "drain",
    # "ready N%". No Nomad check: HAProxy polls it, and /readyz decides whether the VM is up.
    service {
      name     = "zigral-agent"
      provider = "nomad"
      port     = "agent"
      tags     = ["zigral-${NOMAD_ALLOC_INDEX}"]
    }

    task "vm" {
      driver = "qemu"
      # ACPI power button, then this long for zigral-init to stop the services cleanly.
      kill_timeout = "120s"

      artifact {
        # image/build.sh output, served from your artifact store.
        source      = "https://images.example.com/zigral/zigral-0.1.0.qcow2"
        destination = "local/"
        options {
          checksum = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        }
      }

      # Fleet secrets from Nomad Variables (nomad/jobs/zigral), rendered into the task's secrets
      # dir and handed to the VM through QEMU fw_cfg (config.args below).
      # opt/zigral/admin_password: the local admin's first password (first boot only).
      template {
        destination = "secrets/admin_password"
        perms       = "0400"
        data        = "{{ with nomadVar \"nomad/jobs/zigral\" }}{{ .admin_password }}{{ end }}"
      }
      # opt/zigral/user-data: the fleet settings, one ZIGRAL_<SETTING>=value line each (the
      # format of the KubeVirt Secret's "userdata"), read by the image at every boot:
      #   fleet_keys     KID:SECRET[,KID:SECRET...]  (secret; the first signs, all verify)
      #   fleet_users    NAME:ROLE:PHC ...           (white-space separated; role admin|user|disabled)
      #   fleet_members  zigral-{0..15}              (the names the web app lists sessions from)
      # Each variable item must be a single line. change_mode "noop": a changed variable
      # restarts no VM by itself (all at once would end every desktop of the fleet); roll the
      # allocations one at a time (deploy/README.md "Roll the fleet").
      template {
        destination = "secrets/user-data"
        perms       = "0400"
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/zigral" -}}
          ZIGRAL_FLEET_KEYS={{ .fleet_keys }}
          ZIGRAL_FLEET_USERS={{ .fleet_users }}
          ZIGRAL_FLEET_MEMBERS={{ .fleet_members }}
          {{- end }}
        EOT
      }

      config {
        image_path        = "local/zigral-0.1.0.qcow2"
        accelerator       = "kvm"
        graceful_shutdown = true
        # The driver's default is IDE; the image expects virtio.
        drive_interface = "virtio"
        port_map {
          http   = 8000
          viewer = 6081
          agent  = 8001
        }
        args = [
          "-smp", "4",
          # containerDisk-like: writes go to a throw-away overlay, every start is a fresh
          # image. Remove to keep state (and signed updates) in the allocation's copy.
          "-snapshot",
          "-fw_cfg", "name=opt/zigral/appliance_name,string=zigral-${NOMAD_ALLOC_INDEX}",
          "-fw_cfg", "name=opt/zigral/admin_password,file=${NOMAD_SECRETS_DIR}/admin_password",
          "-fw_cfg", "name=opt/zigral/user-data,file=${NOMAD_SECRETS_DIR}/user-data",
        ]
      }

      resources {
        cpu    = 4000
        memory = 8192
      }
    }
  }
}
