"""clspec_launcher.py: a pytest plugin that runs llama.cpp's server test
suite (tools/server/tests, taken from a llama.cpp checkout by run.sh) against
clspecd. Only the launcher changes: utils.ServerProcess.start writes an INI
from the ServerProcess settings (port, slots, context, batch, seed,
temperature, n_predict, api key, CORS, web UI) and starts clspecd on it
instead of llama-server with flags; the tests and their assertions are
llama.cpp's, unchanged.

Settings clspecd has no INI key for (model downloads, LoRA, embeddings,
reranking, draft models, ...) are listed in the
server's log line; a test whose preset needs a model other than stories260K
is skipped at start ("needs model ..."), since only that model is at hand;
the suite's model download step (ServerPreset.load_all) is a no-op.
When the python packages `openai` or `wget` are missing (Debian has no
python3-openai), stand-in modules are installed whose use skips the test.

Environment: CLSPECD (the daemon binary), CLSPEC_MODEL (stories260K.gguf),
CLSPEC_SUITE_TMP (where INIs and logs go), CLSPEC_SUITE_SRC (the llama.cpp
tests directory: --chat-template-file paths are relative to it).
"""
import os
import subprocess
import sys
import time
import types

import pytest

CLSPECD = os.environ.get("CLSPECD", "clspecd")
MODEL = os.environ.get("CLSPEC_MODEL", "stories260K.gguf")
TMP = os.environ.get("CLSPEC_SUITE_TMP", "/tmp")
SRC = os.environ.get("CLSPEC_SUITE_SRC", ".")  # the llama.cpp tests directory (relative template paths)


def _stand_in(name, what):
    """A module whose every attribute skips the calling test."""
    mod = types.ModuleType(name)

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def missing(*a, **k):
            pytest.skip(f"python package '{name}' not installed ({what})")
        return missing
    mod.__getattr__ = __getattr__
    return mod


for _name, _what in (("openai", "the official OpenAI python client"), ("wget", "model downloads")):
    try:
        __import__(_name)
    except ImportError:
        sys.modules[_name] = _stand_in(_name, _what)

import utils  # noqa: E402  (llama.cpp's, from the test directory)

STORIES = ("stories260K", "test-model-stories260K")


def _model_of(s):
    """The model a ServerProcess asks for: None when it is stories260K."""
    ref = " ".join(str(getattr(s, k, None)) for k in ("model_hf_repo", "model_hf_file", "model_file", "model_url")
                   if getattr(s, k, None))
    if not ref or any(m in ref for m in STORIES):
        return None
    return ref


def _ini(s):
    """The INI for ServerProcess s, and the settings it cannot express."""
    g = lambda o, k: getattr(o, k, None)  # noqa: E731  (attributes vary across llama.cpp versions)
    lines = ["[server]", f"host = {g(s, 'server_host')}", f"port = {g(s, 'server_port')}"]
    if g(s, 'api_key'):
        lines.append(f"api_key = {g(s, 'api_key')}")
    lines.append("slots = " + ("true" if g(s, 'server_slots') else "false"))
    lines.append("webui = " + ("false" if g(s, 'no_ui') or g(s, 'no_webui') else "true"))
    # llama-server answers CORS for every origin unless --cors-origins narrows it; with its built-in
    # tools on, its default narrows to localhost
    lines.append(f"cors_origins = {g(s, 'cors_origins') or ('localhost' if g(s, 'server_tools') else '*')}")
    # llama-server's -n is the requests' default, not a cap: [sampling] max_tokens below
    lines.append("max_tokens_limit = 0")
    lines.append(f"log_file = {TMP}/clspecd-{g(s, 'server_port')}.log")
    if g(s, 'enable_ctx_shift'):
        lines.append("context_shift = true")
    if g(s, 'slot_save_path'):  # relative to the test's directory, as llama-server's to its own
        lines.append(f"slot_save_path = {os.path.abspath(g(s, 'slot_save_path'))}")
    lines.append("log_level = debug" if g(s, 'debug') else "log_level = info")
    # --alias a,b,c: llama-server's id is the first alias in sorted order, all listed; --tags likewise
    aliases = sorted({a.strip() for a in (g(s, 'model_alias') or "tinyllama-2").split(",") if a.strip()})
    lines += ["[model]", f"path = {MODEL}", f"name = {aliases[0]}"]
    if len(aliases) > 1:
        lines.append(f"aliases = {','.join(aliases)}")
    if g(s, 'model_tags'):
        lines.append(f"tags = {g(s, 'model_tags')}")
    # --chat-template is a built-in name or a template text; --chat-template-file a file, relative to
    # the suite's own directory; with --jinja a template renders through Jinja
    tmpl, tfile = g(s, 'chat_template'), g(s, 'chat_template_file')
    if tmpl and not tmpl.replace("-", "").replace("_", "").isalnum():  # a text, not a name
        tfile = os.path.join(TMP, f"template-{g(s, 'server_port')}.jinja")
        with open(tfile, "w") as f:
            f.write(tmpl)
        tmpl = None
    if tfile:
        lines.append(f"chat_template_file = {os.path.join(SRC, tfile)}")
    if tmpl:
        lines.append(f"chat_template = {tmpl}")
    elif tfile and g(s, 'jinja'):
        lines.append("chat_template = jinja")
    if g(s, 'reasoning'):
        lines.append(f"reasoning = {g(s, 'reasoning')}")
    n_ctx = g(s, 'n_ctx') or 512
    # llama-server splits n_ctx between the slots unless --kv-unified
    lines += ["[kv]", f"n_ctx = {n_ctx}", "unified = " + ("true" if g(s, 'kv_unified') else "false")]
    if g(s, 'n_batch'):
        lines.append(f"n_batch = {g(s, 'n_batch')}")
    if g(s, 'n_ubatch'):
        lines.append(f"n_ubatch = {g(s, 'n_ubatch')}")
    if g(s, 'ctk'):
        lines.append(f"type_k = {g(s, 'ctk')}")
    if g(s, 'ctv'):
        lines.append(f"type_v = {g(s, 'ctv')}")
    # llama-server's slots keep their prompt cache between requests
    lines += ["[slots]", f"parallel = {g(s, 'n_slots') or 1}", "keep_cache = true"]
    lines += ["[sampling]", f"temperature = {g(s, 'temperature')}", f"seed = {g(s, 'seed')}",
              "max_tokens = " + str(g(s, 'n_predict') if g(s, 'n_predict') and g(s, 'n_predict') > 0 else 0)]
    unsupported = [k for k in ("model_draft", "lora_files", "server_embeddings", "server_reranking",
                               "n_ga",
                               "pooling", "reasoning_format", "spec_type", "sleep_idle_seconds", "models_dir",
                               "server_tools", "ui_mcp_proxy")
                   if getattr(s, k, None)]
    return "\n".join(lines) + "\n", unsupported


def _start(self, timeout_seconds=utils.DEFAULT_HTTP_TIMEOUT):
    other = _model_of(self)
    if other:
        pytest.skip(f"needs model {other} (only stories260K is at hand)")
    text, unsupported = _ini(self)
    path = os.path.join(TMP, f"clspecd-{self.server_port}.ini")
    with open(path, "w") as f:
        f.write(text)
    print(f"tests: starting clspecd -c {path}" + (f" (not expressible: {', '.join(unsupported)})" if unsupported else ""))
    self._log = open(os.path.join(TMP, f"clspecd-{self.server_port}.out"), "w")
    self.process = subprocess.Popen([CLSPECD, "-c", path], stdout=self._log, stderr=self._log)
    utils.server_instances.add(self)
    t0 = time.time()
    while time.time() - t0 < timeout_seconds:
        try:
            r = self.make_request("GET", "/health")
            if r.status_code == 200:
                self.ready = True
                return
        except Exception:
            pass
        if self.process.poll() is not None:
            raise RuntimeError(f"clspecd exited with {self.process.returncode}; see {TMP}/clspecd-{self.server_port}.*")
        time.sleep(0.02)
    raise TimeoutError(f"clspecd did not answer /health 200 within {timeout_seconds} s")


utils.ServerProcess.start = _start
# the suite's session fixture downloads every preset's model first: clspecd reads the local one
utils.ServerPreset.load_all = staticmethod(lambda: None)
