"""Reading untrusted checkpoints without running them: file checks, a pickle-global scanner, and a
structural unpickler that never imports a module or calls anything the file names."""
