"""symgrad's runtime: load a generated module and train with it. It never imports the compiler's
stages; the generated module is the interface (model files are compiled through the public API)."""
from .allocator import keep_freed_memory
from .gradcheck import GradCheck, check_gradients, random_inputs
from .load import StaleModuleError, load
from .minimize import METHODS, MinimizeResult, minimize
from .model import Model, init_array
from .secondcheck import check_hvp, check_input_grad, check_jvp

__all__ = ["load", "Model", "minimize", "MinimizeResult", "METHODS", "StaleModuleError",
           "check_gradients", "random_inputs", "GradCheck", "init_array", "keep_freed_memory",
           "check_hvp", "check_jvp", "check_input_grad"]
