/* Replays a fuzz corpus without libFuzzer: every file named on the command
 * line (directories are walked) is fed to LLVMFuzzerTestOneInput once. Each
 * input gets an alarm so a hang fails with the file's name. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n_inputs;

static int replay(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d == NULL)
            return 1;
        struct dirent *e;
        int rv = 0;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            rv |= replay(child);
        }
        closedir(d);
        return rv;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    fprintf(stderr, "replay %s\n", path);
    alarm(10);
    LLVMFuzzerTestOneInput(buf, n);
    alarm(0);
    free(buf);
    n_inputs++;
    return 0;
}

int main(int argc, char **argv)
{
    int rv = 0;
    for (int i = 1; i < argc; i++)
        rv |= replay(argv[i]);
    printf("%s: replayed %d inputs\n", argv[0], n_inputs);
    return rv;
}
