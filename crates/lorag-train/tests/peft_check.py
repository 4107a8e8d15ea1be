"""Logits of a Hugging Face base model + PEFT LoRA adapter, for tests/peft_python.rs.

Loads the base folder with transformers (f32, eager attention) and the adapter with
`peft.PeftModel.from_pretrained`, runs the given token ids, and writes the logits with the
adapter (`with`) and with the adapter disabled (`base`) to a safetensors file.

  python peft_check.py --probe                      # exit 0 iff torch, transformers, peft import
  python peft_check.py BASE_DIR ADAPTER_DIR TOKENS_JSON OUT_SAFETENSORS
"""

import json
import sys


def main() -> int:
    if sys.argv[1:] == ["--probe"]:
        import peft  # noqa: F401
        import safetensors  # noqa: F401
        import torch  # noqa: F401
        import transformers

        print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
        return 0
    base_dir, adapter_dir, tokens_json, out = sys.argv[1:5]
    import torch
    from peft import PeftModel
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=torch.float32, attn_implementation="eager"
    )
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    with open(tokens_json) as f:
        ids = torch.tensor([json.load(f)], dtype=torch.long)
    with torch.no_grad():
        with_adapter = model(input_ids=ids).logits[0].float().contiguous()
        with model.disable_adapter():
            without = model(input_ids=ids).logits[0].float().contiguous()
    n_lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    save_file({"with": with_adapter, "base": without}, out)
    print(
        json.dumps(
            {
                "model_type": base.config.model_type,
                "lora_tensors": n_lora,
                "positions": int(ids.shape[1]),
                "adapter_effect_max_abs": float((with_adapter - without).abs().max()),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
