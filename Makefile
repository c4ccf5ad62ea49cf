# Zigral: the two commands are `make run` and `make test` (see README.md).
# One cargo profile (release) serves run, test, bench and image: the workspace builds once.

CARGO ?= cargo
PROFILE_DIR := target/release
export ZIGRAL_BIN_DIR := $(CURDIR)/$(PROFILE_DIR)

.PHONY: run test test-rust test-image build deps deps-test ui python lint fmt clippy bench image boot bench-boot update-bundle clean-state help

help:
	@echo "make run    - bring the appliance stack up in host mode (foreground; Ctrl-C stops it)"
	@echo "make test   - install what the tests need, build once, run every test (incl. the VM image boot)"
	@echo "make bench  - run the benchmarks against their peers (prints name: value lines)"
	@echo "make image  - build the VM image (image/build/zigral.qcow2); make boot - boot it under QEMU"
	@echo "make bench-boot - first-boot times of the VM image: direct kernel vs GRUB (name: value lines)"
	@echo "make update-bundle - build and sign an update bundle (image/build/updates/) for POST /api/v1/admin/update"
	@echo "make lint   - cargo fmt --check and clippy -D warnings"

run:
	scripts/run-host.sh

deps:
	scripts/install-deps.sh run

deps-test:
	scripts/install-deps.sh all

ui:
	ui/build.sh

python:
	scripts/setup-python.sh

build:
	$(CARGO) build --release --workspace --all-targets

# Everything the suite needs, one release build, every test (crates, whole stack, VM image).
test:
	scripts/test.sh

test-image: image
	$(CARGO) test --release --workspace --test image -- --ignored --test-threads=1

image: build ui
	image/build.sh

boot:
	image/boot.sh

# First-boot times of the image, direct kernel vs GRUB, in one run (needs QEMU; minutes).
bench-boot: image
	image/boot-bench.sh

update-bundle: build ui
	scripts/update-bundle.sh

bench: deps-test ui build
	$(CARGO) bench --workspace --bench supervisor
	$(CARGO) bench --workspace --bench proxy
	$(CARGO) bench --workspace --bench desktop
	$(CARGO) bench --workspace --bench control
	$(CARGO) bench -p zigral-control --bench actions
	$(CARGO) bench -p zigral-control --bench agent_step
	$(CARGO) bench -p zigral-tests --bench desktops
	$(CARGO) bench -p zigral-tests --bench recording
	$(CARGO) bench -p zigral-tests --bench fleet

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean-state:
	rm -rf .state
