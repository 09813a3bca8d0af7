"""The LiteRT deployable as an MLflow pyfunc model ("models from code").

MLflow copies this file and `litert_runtime.py` (logged as a code path) into
every deployable and executes this one on load, so a deployable needs only
mlflow, numpy and ai-edge-litert, never tensorflow and never this package.
Keep its imports to those.
"""

from __future__ import annotations

import mlflow
import numpy as np

try:  # in a logged deployable: the runtime copied beside this file, whatever rtdeploy is installed
    from litert_runtime import THREADS, LiteRTClassifier
except ImportError:  # inside the rtdeploy package (while logging)
    from steps.modeling.litert_runtime import THREADS, LiteRTClassifier

TFLITE_ARTIFACT = "tflite"  # key of the .tflite file in the pyfunc model's artifacts


class LiteRTPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of LiteRTClassifier: input a batch of images, output class probabilities."""

    def load_context(self, context):
        threads = int((context.model_config or {}).get(THREADS, 1))
        self.classifier = LiteRTClassifier.from_file(context.artifacts[TFLITE_ARTIFACT], threads)

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        return self.classifier.predict_proba(model_input)


mlflow.models.set_model(LiteRTPyfunc())
