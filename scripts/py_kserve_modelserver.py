#!/usr/bin/env python3
"""The KServe peer for `tessera serve`'s client benchmark: KServe's own Python ModelServer
(PyPI `kserve`) with onnxruntime behind it, answering the same KServe v2 REST and gRPC APIs.

    py_kserve_modelserver.py HTTP_PORT GRPC_PORT NAME=PATH...

One InferenceSession per model (onnxruntime's default threads); outputs go back in binary form
when the client asks for it, as KServe does. Arguments are positional because KServe parses the
command line itself at import (and would take `--model...` as an abbreviation of its own).
"""

import sys
import uuid

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.numpy_codec import from_np_dtype


class OrtModel(Model):
    def __init__(self, name, path, threads):
        super().__init__(name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        ort.set_default_logger_severity(3)
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        outs = self.session.run(self.names, feeds)
        outputs = []
        for name, a in zip(self.names, outs):
            a = np.ascontiguousarray(a)
            o = InferOutput(name=name, shape=list(a.shape), datatype=from_np_dtype(a.dtype))
            o.set_data_from_numpy(a, binary_data=True)
            outputs.append(o)
        return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id or str(uuid.uuid4()))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    http_port, grpc_port = int(sys.argv[1]), int(sys.argv[2])
    models = [OrtModel(*spec.split("=", 1), 0) for spec in sys.argv[3:]]
    ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1).start(models)


if __name__ == "__main__":
    main()
