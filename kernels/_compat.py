"""Differences between the Triton versions fastgan supports (pyproject.toml), handled in one place.

Triton 3.6's interpreter turns a tensor used as a Python integer (a `range` bound, which under
the interpreter is a one-element array: `for m0 in range(m_lo, m_hi, BLOCK_M)`) into an int with
`int(array)`, which NumPy 2.4 refuses for an array of one dimension ("only 0-dimensional arrays
can be converted to Python scalars"); Triton 3.9 squeezes the array first. Under the interpreter,
`patch_interpreter` gives every version the newer conversion. Compiled kernels are not affected.
"""


def patch_interpreter():
    """Make the interpreter's tensor -> int conversion squeeze one-element arrays (Triton 3.6)."""
    from triton.runtime import interpreter

    patch = getattr(interpreter, "_patch_lang_tensor", None)
    if patch is None or getattr(patch, "fastgan_patched", False):
        return

    def patch_lang_tensor(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    patch_lang_tensor.fastgan_patched = True
    interpreter._patch_lang_tensor = patch_lang_tensor

