"""ssd: simple self-distillation of code LLMs (generate → train → evaluate → analyse)."""
