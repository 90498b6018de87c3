/* rope.cl: rotary position embedding applied in place to x (n_tokens, n_head,
 * head_dim). One work-item per rotated pair (token, head, i < n_rot/2);
 * theta_i = pos[t] * freq_scale * freq_base^(-2i/n_rot). Normal mode rotates
 * (2i, 2i+1), NeoX mode (i, i + n_rot/2); dims >= n_rot are untouched.
 * Same kernel for both families (elementwise). */

__kernel void rope(__global float *x, uint x_off, __global const int *pos, int n_tokens, int n_head,
                   int head_dim, int n_rot, int neox, float freq_base, float freq_scale)
{
    int gid = get_global_id(0);
    int half_rot = n_rot / 2;
    if (gid >= n_tokens * n_head * half_rot)
        return;
    int i = gid % half_rot;
    int th = gid / half_rot; /* token * n_head + head */
    int t = th / n_head;
    __global float *row = x + x_off + (size_t)th * head_dim;
    float theta = (float)pos[t] * freq_scale * pow(freq_base, -2.0f * (float)i / (float)n_rot);
    float c = cos(theta), s = sin(theta);
    int i0 = neox ? i : 2 * i;
    int i1 = neox ? i + half_rot : 2 * i + 1;
    float x0 = row[i0], x1 = row[i1];
    row[i0] = x0 * c - x1 * s;
    row[i1] = x0 * s + x1 * c;
}
