"""Files on disk: untrusted reads from watched directories, private directories and files."""
