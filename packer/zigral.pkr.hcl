# Zigral appliance image, built with Packer's qemu builder (works with Debian's packer 1.6.6,
# offline, builders built in). The base disk comes from the image recipe (image/build.sh: the
# Debian OS layer with zigral-init as PID 1, sshd and the first-boot provisioning); Packer boots
# it under QEMU, uploads the current Zigral layer over SSH (binaries, UI, configs: the same
# payload and installer image/build.sh uses), seals the VM (no host keys, state or Packer key
# left behind) and powers it off through zigral-init. Run via packer/build.sh, which prepares
# the base image, the payload and a throw-away SSH key, then calls `packer build`.
#
# Newer Packer (>= 1.10) no longer bundles the qemu builder: add packer/plugins.pkr.hcl.newer
# (required_plugins) as plugins.pkr.hcl and run `packer init` first. Packer 1.6.6 REJECTS a
# required_plugins block, which is why it is not in this file. Cloud targets: see README.md.

packer {
  required_version = ">= 1.6.0"
}

variable "base_image" {
  type        = string
  description = "Base qcow2 from image/build.sh (booted, then updated in place in a copy)."
  default     = "../image/build/zigral.qcow2"
}

variable "payload_dir" {
  type        = string
  description = "Zigral layer from `image/build.sh --payload DIR` (binaries, UI, overlay, layer.sh)."
  default     = "build/payload"
}

variable "disk_size" {
  type        = string
  description = "Virtual disk size of the output image; the root file system grows to it at first boot."
  default     = "8G"
}

variable "admin_password" {
  type        = string
  description = "Admin password baked into the image (empty: generated at first boot and printed once on the serial console)."
  default     = ""
  sensitive   = true
}

variable "admin_ssh_public_key" {
  type        = string
  description = "OpenSSH public key authorized for `zigral` and `root` in the image (empty: none)."
  default     = ""
}

variable "ssh_private_key_file" {
  type        = string
  description = "Throw-away key Packer logs in with; its public half is handed to the VM via QEMU fw_cfg and removed by the seal step."
  default     = "build/packer_key"
}

variable "accelerator" {
  type    = string
  default = "tcg"
}

variable "output_directory" {
  type    = string
  default = "build/output"
}

source "qemu" "zigral" {
  iso_url          = var.base_image
  iso_checksum     = "none"
  disk_image       = true
  format           = "qcow2"
  disk_size        = var.disk_size
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  cpus             = 2
  memory           = 2048
  headless         = true
  vnc_bind_address = "127.0.0.1"
  boot_wait        = "1s"
  boot_command     = []
  # The disk boots on its own (GRUB in the MBR); the guest learns Packer's key from fw_cfg.
  # Careful: a "-device" or "-netdev" entry here REPLACES all of Packer's default ones
  # (the NIC with the SSH port forward), so only add flags Packer does not set itself.
  qemuargs = [
    ["-fw_cfg", "name=opt/zigral/authorized_keys,file=${var.ssh_private_key_file}.pub"],
    ["-serial", "file:${var.output_directory}-serial.log"],
  ]
  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "15m"
  host_port_min        = 22220
  host_port_max        = 22290
  shutdown_command     = "/usr/lib/zigral/seal --poweroff"
  shutdown_timeout     = "5m"
  # Compaction/compression happen in packer/build.sh with zstd (1.6.6 only has slow zlib).
  disk_compression = false
  skip_compaction  = true
  output_directory = var.output_directory
  vm_name          = "zigral.qcow2"
}

build {
  sources = ["source.qemu.zigral"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/zigral-payload"]
  }

  provisioner "file" {
    source      = "${var.payload_dir}/"
    destination = "/tmp/zigral-payload"
  }

  provisioner "shell" {
    environment_vars = [
      "ZIGRAL_ADMIN_PASSWORD=${var.admin_password}",
      "ZIGRAL_ADMIN_SSH_KEY=${var.admin_ssh_public_key}",
    ]
    inline = [
      "set -eu",
      "cd /tmp/zigral-payload",
      "if [ -n \"$ZIGRAL_ADMIN_SSH_KEY\" ]; then printf '%s\\n' \"$ZIGRAL_ADMIN_SSH_KEY\" > authorized_keys; fi",
      "if [ -n \"$ZIGRAL_ADMIN_PASSWORD\" ]; then (umask 077; printf '%s\\n' \"$ZIGRAL_ADMIN_PASSWORD\" > admin-password); fi",
      "./layer.sh / /tmp/zigral-payload",
      "rm -rf /tmp/zigral-payload",
      "cat /etc/zigral/release",
    ]
  }
}
