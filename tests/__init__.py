"""The test suite, laid out like the code: unit/<package>/, integration/, e2e/, fuzz/."""
