// Greedy decoding with llama.cpp's library, for side-by-side checks against `minicpm generate`.
//
//   llama_greedy MODEL.gguf IDS N [--ignore-eos]
//
// IDS: the prompt as comma-separated token ids, used exactly as given (no BOS is added).
// Prints one JSON object on stdout: the prompt, the generated ids, and for every step the two
// largest logits with their ids ("top2": [[id, logit, id, logit], ...]), so a near-tie between
// two tokens can be told from a real disagreement. Decoding stops at an end-of-generation token
// unless --ignore-eos. llama.cpp's own log goes to stderr.
// Built by build_llama_cpp.sh against the llama.h of the version it builds.
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_ids(const char *s, llama_token **out) {
    int cap = 16, n = 0;
    llama_token *ids = malloc(cap * sizeof *ids);
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, cap * sizeof *ids);
        }
        ids[n++] = (llama_token) v;
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') {
            free(ids);
            return -1;
        }
    }
    *out = ids;
    return n;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf IDS N [--ignore-eos]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    llama_token *prompt = NULL;
    int n_prompt = parse_ids(argv[2], &prompt);
    int n_new = atoi(argv[3]);
    int ignore_eos = argc > 4 && strcmp(argv[4], "--ignore-eos") == 0;
    if (n_prompt <= 0 || n_new <= 0) {
        fprintf(stderr, "error: IDS must be comma-separated token ids and N positive\n");
        return 2;
    }

    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "error: %s: llama.cpp could not load the model\n", path);
        return 2;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    for (int i = 0; i < n_prompt; i++) {
        if (prompt[i] >= n_vocab) {
            fprintf(stderr, "error: prompt id %d is outside the vocabulary of %d\n", prompt[i], n_vocab);
            return 2;
        }
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_prompt + n_new + 16;
    cp.n_batch = cp.n_ctx;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    cp.no_perf = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "error: %s: llama.cpp could not create a context\n", path);
        return 2;
    }

    llama_token *out = malloc(n_new * sizeof *out);
    float (*top2)[4] = malloc(n_new * sizeof *top2);
    int n_out = 0;
    struct llama_batch batch = llama_batch_get_one(prompt, n_prompt);
    llama_token next;
    while (n_out < n_new) {
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "error: llama_decode failed at step %d\n", n_out);
            return 1;
        }
        const float *logits = llama_get_logits_ith(ctx, -1);
        int best = 0, second = -1;
        for (int t = 1; t < n_vocab; t++) {
            if (logits[t] > logits[best]) {
                second = best;
                best = t;
            } else if (second < 0 || logits[t] > logits[second]) {
                second = t;
            }
        }
        top2[n_out][0] = (float) best;
        top2[n_out][1] = logits[best];
        top2[n_out][2] = (float) second;
        top2[n_out][3] = second >= 0 ? logits[second] : 0.0f;
        next = best;
        out[n_out++] = next;
        if (!ignore_eos && llama_vocab_is_eog(vocab, next)) {
            break;
        }
        batch = llama_batch_get_one(&next, 1);
    }

    printf("{\"model\": \"%s\", \"prompt\": [", path);
    for (int i = 0; i < n_prompt; i++) printf("%s%d", i ? ", " : "", prompt[i]);
    printf("], \"ids\": [");
    for (int i = 0; i < n_out; i++) printf("%s%d", i ? ", " : "", out[i]);
    printf("], \"top2\": [");
    for (int i = 0; i < n_out; i++) {
        printf("%s[%d, %.6g, %d, %.6g]", i ? ", " : "", (int) top2[i][0], top2[i][1],
               (int) top2[i][2], top2[i][3]);
    }
    printf("]}\n");

    free(out);
    free(top2);
    free(prompt);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
