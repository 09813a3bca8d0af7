"""rtdeploy: every lifecycle stage of a Keras image classifier as an MLflow entry point.

TFMOT only works with tf_keras (Keras 2), and tensorflow chooses its Keras when
it is first imported, so the switch must be set before any module of this
package (or MLflow's tensorflow flavor) imports tensorflow. It is forced, not
defaulted: a user's TF_USE_LEGACY_KERAS=0 would break every compression step.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# TensorFlow's C++ INFO/WARNING chatter buries the progress output users read.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
