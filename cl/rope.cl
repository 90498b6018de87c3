/* rope.cl: rotary position embedding applied in place to x (n_tokens, n_head,
 * head_dim). One work-item per (token, pair i < n_rot/2): it computes
 * theta_i = pos[t] * freq_scale * freq_base^(-2i/n_rot) and its cos/sin once
 * and rotates pair i of every head of the token (the transcendentals are the
 * cost of this op: once per (token, pair), not per (token, head, pair)).
 * Normal mode rotates (2i, 2i+1), NeoX mode (i, i + n_rot/2); dims >= n_rot
 * are untouched. Same kernel for both families (elementwise). */

__kernel void rope(__global float *x, uint x_off, __global const int *pos, int n_tokens, int n_head,
                   int head_dim, int n_rot, int neox, float freq_base, float freq_scale)
{
    int gid = get_global_id(0);
    int half_rot = n_rot / 2;
    if (gid >= n_tokens * half_rot)
        return;
    int i = gid % half_rot;
    int t = gid / half_rot;
    float theta = (float)pos[t] * freq_scale * pow(freq_base, -2.0f * (float)i / (float)n_rot);
    float c = cos(theta), s = sin(theta);
    int i0 = neox ? i : 2 * i;
    int i1 = neox ? i + half_rot : 2 * i + 1;
    __global float *row = x + x_off + (size_t)t * n_head * head_dim;
    for (int h = 0; h < n_head; h++, row += head_dim) {
        float x0 = row[i0], x1 = row[i1];
        row[i0] = x0 * c - x1 * s;
        row[i1] = x0 * s + x1 * c;
    }
}
