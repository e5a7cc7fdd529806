// OpenSSL's libcrypto for Swift (apt libssl-dev, which libpq-dev depends on): the cluster
// CA's keys and certificates and the SCRAM secrets. Macros Swift cannot call get a typed
// wrapper here; everything else is used as declared.
#ifndef PGCLUSTER_COPENSSL_SHIM_H
#define PGCLUSTER_COPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

/// The bytes a memory BIO holds (BIO_get_mem_data is a macro).
static inline long pgc_bio_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}

/// OPENSSL_free is a macro (it passes the caller's file and line).
static inline void pgc_openssl_free(void *pointer) {
    OPENSSL_free(pointer);
}

/// The number of names in a GENERAL_NAMES stack, and one of them (sk_GENERAL_NAME_* are macros).
static inline int pgc_general_names_count(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}

static inline const GENERAL_NAME *pgc_general_names_value(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}

/// A new empty GENERAL_NAMES stack, and one name added to it (it takes the name).
static inline GENERAL_NAMES *pgc_general_names_new(void) {
    return sk_GENERAL_NAME_new_null();
}

static inline int pgc_general_names_push(GENERAL_NAMES *names, GENERAL_NAME *name) {
    return sk_GENERAL_NAME_push(names, name);
}

/// A GENERAL_NAME's type and its string (an IA5String for DNS, an OCTET STRING for IP).
static inline int pgc_general_name_type(const GENERAL_NAME *name) {
    return name->type;
}

static inline const ASN1_STRING *pgc_general_name_string(const GENERAL_NAME *name) {
    switch (name->type) {
    case GEN_DNS: return name->d.dNSName;
    case GEN_IPADD: return name->d.iPAddress;
    default: return NULL;
    }
}

#endif
