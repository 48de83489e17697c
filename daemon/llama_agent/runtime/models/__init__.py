"""Model backends behind one interface: llama.cpp in-process, an OpenAI-compatible server, the Hub."""
