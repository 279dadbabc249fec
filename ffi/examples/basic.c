/* medvault from C: create a vault, write a record, read it back (whole and one field),
 * verify the access log, close. Build (from the repository root, after
 * `cargo build --release -p medvault-ffi`):
 *
 *   cc -Wall -Wextra -o basic ffi/examples/basic.c -Iffi/include \
 *      -Ltarget/release -lmedvault_ffi -Wl,-rpath,$PWD/target/release
 *   ./basic /tmp/some-new-directory
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medvault.h"

/* Prints the failure of the call that returned `st` and leaves. */
static int fail(const char *what, MedvaultStatus st) {
    const char *msg = medvault_last_error_message();
    fprintf(stderr, "%s failed: status %d (%s): %s\n", what, (int)st,
            medvault_last_error_kind() ? medvault_last_error_kind() : "?",
            msg ? msg : "(no message)");
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NEW_VAULT_DIRECTORY\n", argv[0]);
        return 2;
    }
    /* A raw 256-bit root key, as a KMS would hand it over (fixed here for the example;
     * medvault_create_passphrase takes a passphrase instead). */
    uint8_t root_key[32];
    for (int i = 0; i < 32; i++) root_key[i] = (uint8_t)(i * 7 + 1);

    MedvaultAccess nurse = {.actor = "nurse-42", .purpose = "care", .reason = NULL};
    MedvaultVault vault = 0;
    MedvaultStatus st = medvault_create_key(argv[1], root_key, sizeof root_key, &nurse, &vault);
    if (st != MEDVAULT_STATUS_OK) return fail("create", st);

    const char *obs = "{\"resourceType\":\"Observation\",\"code\":\"85354-9\","
                      "\"value\":120,\"unit\":\"mm[Hg]\"}";
    st = medvault_put(vault, &nurse, "patient-1", "Observation", "bp-1", obs);
    if (st != MEDVAULT_STATUS_OK) return fail("put", st);

    char *json = NULL;
    st = medvault_get(vault, &nurse, "patient-1", "Observation", "bp-1", &json);
    if (st != MEDVAULT_STATUS_OK) return fail("get", st);
    printf("record: %s\n", json);
    int whole_ok = strstr(json, "\"value\":120") != NULL;
    medvault_string_free(json); /* zeroizes the plaintext */

    const char *fields[] = {"value"};
    st = medvault_get_fields(vault, &nurse, "patient-1", "Observation", "bp-1", fields, 1, &json);
    if (st != MEDVAULT_STATUS_OK) return fail("get_fields", st);
    printf("value only: %s\n", json);
    int fields_ok = strcmp(json, "{\"value\":120}") == 0;
    medvault_string_free(json);

    uint64_t entries = 0;
    st = medvault_verify(vault, &nurse, NULL, &entries);
    if (st != MEDVAULT_STATUS_OK) return fail("verify", st);
    printf("access log verified: %llu entries\n", (unsigned long long)entries);

    st = medvault_close(vault);
    if (st != MEDVAULT_STATUS_OK) return fail("close", st);
    /* create, write, read, read: four entries before the verify. */
    if (!whole_ok || !fields_ok || entries != 4) {
        fprintf(stderr, "unexpected result\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
