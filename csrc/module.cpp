// The one Python module definition of syncssl._C. Other files in csrc/ only register operators (TORCH_LIBRARY);
// importing the module loads the shared library, which runs those registrations. No pybind11 is needed.
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "syncssl C++ CPU kernels; the operators live in torch.ops.syncssl",  // doc
      -1,  // no per-module state
      nullptr,  // no Python-level functions
  };
  return PyModule_Create(&module_def);
}
}
