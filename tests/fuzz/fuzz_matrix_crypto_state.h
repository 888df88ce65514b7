/* SPDX-License-Identifier: MIT */
/* Generated once: the stored state of the fuzzed machine (@bot:example.org, BOTDEV), with
 * pickle key "fuzz-pickle-key-0123456789abcdef". It knows @alice:example.org's device ALICEDEV
 * and holds her Megolm session of !r1:example.org. Test data, not a secret. */
#ifndef FB_FUZZ_MATRIX_CRYPTO_STATE_H
#define FB_FUZZ_MATRIX_CRYPTO_STATE_H

/* The account pickle is one literal longer than C99's minimum limit; clang and gcc take it. */
#pragma GCC diagnostic ignored "-Woverlength-strings"

static const char *const fuzz_state[][2] = {
    {"account",
     "ObHSpLtQ1KJXKuqVoHCZZJ3shsZR9jJAt80prHG1kcw+81jm8pTqO8O05MFxMOz5jnYevadQ3r+"
     "qyhnI6GuoqnLBkuhH0GJdRxCjJj7EWmVmgKKEXcuZauAf1QCq/0/"
     "8OvleGUJaPpfqQfdxldAnKt++OcPeTrMWYFVS1PO2T7cI3oR/"
     "uA3s34aLApVOdYpsJPhlqbLLqwIFlGHIDUU9LGLUf6wGEGiAUIW7qpyYmLgTrCGsRuPwq9YeaR5VhdibUQNhIPicbTI1y"
     "yd/8Pahlw/1yWss40vd9ye02sZO3NxzT/n01ZFQopcHnJ+C+YQyJ+NdRxE/"
     "1Iy9cEjlRmyNcr1aVeZyaw+WuBNefjEB8vFN90IKOGaFNwi6Xe5cdwNFTQfAzl298n9XRNSRulADCofY+9PfiN9+"
     "GOWwUPjl34eKKkBJE4IAz9ltBQwyoS3nvaG8hG5rehDpz14FHG/42WWarfzxlzoilyq4r0Ogaef7/"
     "i91577BuILIpsbL0Ffr9H8i07Vbos0RSmIEF2jphY+"
     "pP1tYe1RiTjPNXPib8oe2IWrf7uGkooFvPQsn3DM5FQnrvsB3vSQrqFNBnaWeehnP+BbRlH6QB2EbvHcyFm2/"
     "XsNVvjT4qQhZFbjLlUuR8Tpzrip26++5BCECs+A9GYR878D9+PT/"
     "is1D5XnAc9OerwLIbhl3uppT2XDZoldlO23HqqHoZsgF6m8H+ytJxuaDMZanosaQAkdEh0vClWe3Vz07yK0YHgOBg/"
     "yTPl1AaJBSqUN08F3d95FGAL1Yim4ayPNfn/I/QnjwssJpyN0tADtON+acVZxoznG7Hpncu4LNNBdjRvAdK39IaBSF/"
     "UqfC0EKhYFhh3S5M79+Ich/EoqlxakEUkDZQokzKrbi/"
     "jjrbauDShVFlEN1VLAP7QDYrgzvAY2ugXMXzGUbdyrslqWKHis1HxSM6QudLA+"
     "FdcVUu6sOQkt39ABV5B3mu2WKarHLbY5eefqECAZRm/"
     "ea5qvCnawy4KaLwHhe7X7GFIYhSAuZIEiqaYiA2+peYWd4cPMFbTvp+wIQ8KeUNFQ3XYfUGplSa5fJK7U9KJaXke2Er+"
     "SgqEHEoPiEUAk3IpD6kLDkI1VU3HRz9k/EKh7g4MHFUFhkzusBZNVhcxCa0eEJcbbRQz9hyK/ZmVzS3ATaPPrs/ksH/"
     "LlkPl+e6AViOBdFWR8689R7EmFeLu7H8vAXlzEKdzQI2j4j39OqZks8VmVI1t5SSoCAhX+pbeUpPbDP8xn74Z+Sc/"
     "L2f2T5RLgA+dA1njJhRqa/"
     "whdWB7r12zKoYaG8jvocY5c5ExOnSoPtfbpNRKq8ClTj939mkZwWcLDrYZXmOlB3FQi2ncvow4REIddSHbofVEE/"
     "aXHer3+HXT7DWFcdr8hnZwaqB5XWsNdFuou0C81UrAyb61g4RMCEvLVt6jvwosKCCdnwY/kVVhF+bu/KExfZ/"
     "QXGl7iwzc20d/oN1uJUXwT+aCcNrD2XzEHYT3yoVWs4w1OfI49r7bhu1blvHn0/WtFY4jhpH1ffQh/"
     "iPr7bRmCb9F5QcI95oFTlz/GqgA2+MeolnmbGK5v/"
     "VjrngiErXrvjG1DCf8NQu3nsTHkfsn407jQ4R5kTt0METsrpKY9msIxKnR01c3jd09i6pnMpMLkrd99Dmsg9NCpsQroXY"
     "m0z0f02zAUkFBbTIfn7VV9DazodTB43oKtB6fudBewZApo9DOw7GLzj5MbDSr6vLDgOBXiq6PgaR0NqMej/"
     "BhoC26PmivQ9rSdX2sTL4Ak2Hi+lcM33R1dckQcHgMF9z0k162n3chjM6QeeeEwq3a3YndHOT/"
     "j0MgNHFlBsQ0ZshwskGWkpjEUhosq0WzS/"
     "GoKa8wPo70S+"
     "jLQ6DoyPTBM9I3zaGsBW2r3Af7fWkJpIbXqe9BZWCHo875VoJZJJ8DwA1xyYWCtVS0MxM1WBiUZ4OMiHhBB7Vv68eu8lo"
     "ZSM7maHufYkKvf07+SOzQZct1HsY0DMzgbJKesHLathYtwMIvwCtzo04pqZJHpaIm3yIU7QpO3JIBt8+p/mXRIj++/"
     "+5HT9YxnlMI5WK/0sBQt0E9ffA+tVExu3+zQ/ZoRS9CSgY695bZBe4JFmaYuRwTHSRITMNziagD30NRPhZX0Q/"
     "XtZtWQHRhDashA2lyb77RrXscY8dhr0DKXzQp7ROb09p73dTkNIZjIcc7alyHv/"
     "4Mb4RdKNyOJzmMzhr782eiL2DIP1jynJ0AY+QU1oxPC6YvIc6fe+"
     "ELhmWq4QCtmR6vGIIZ77apl6wsEzURGu2c5PuJGY1MU0xx6L0jTVpZ4NL5gp2vY0uyWE5W20jXlN1uJEeGaxmEQIsvOtY"
     "pzqwshhb15aqM60kSyP7d88bknmiczZUDWuFGoU9Af3ss7fDLJ9erfaxHDSJzd28BkyIgT4oD17k7JUNbAAFYukjPexeZ"
     "glWE+"
     "2CaUJQWDd9apIovq1TfdpSBBDxPTu6OPkhkdHiWDxm1AnzKUWVlsnDVdms9GsnK5d1ydvBu5t7NpocIb92TkbwcrNdkrz"
     "Thccosv5RgdPSRmoZIxuQP+5hc9x//"
     "6Gu0hdGqDnM08KRt80BiuJRGRKK+BchCjGXWxa5oLX6kHa3e2mMfPGDlYi+"
     "keU35SCBDh0TcZc4DpDE5xBdjjEcffyzZQMNMk8SmHt9b7w5M01STV1HaJpI7An8JEYHBlDXPtTAbmhQbe6ToBjRa8MvX"
     "6mg6jLCrWLOcUjmVbK1ddAj/ilRH572JVMmHkYcKyErhKEf8EtkeaWLr8H6jr+cxQ1E5MXfqfEed11NQ/"
     "1CoJ7uGaoG3AAdIOma+V08LX055HcumgtpP1ti+pglofZXl3kn58mCRxJ5mC6eVEUp3bwq+9eW88L23FB/"
     "Ou2wsN2GuvaadduvrPFOCi2WkTbuEK8VGqK26tsfwQ01oUV7ZAbliep/"
     "4JogUgothrzJ+CzQQSZ8lPTBYyowP1dnxhL+"
     "n6CUnFZE7XGLJpVnGVgCq06vE1VNpPVXF2RmVBTLF5ZOl6Qy5afHOowf0XXh9q34e8adUcecRYof+"
     "aUjMQRnWvr2wRrMBdhydbUnUsWmtqQhwYnlPAA6U5ih2sWjfEfwMHO8/"
     "7nF+gV+rBPMvB4p5zwN1IGZBP6uugW+TlHKnyl2Klu6ND1N0MFzgYtZFVQP4gd+"
     "LY6vm42R1tmkrKey7d98m4I5D6b68HIUlc+Mu3+PdeYzXszRpRPcDW03TYkGUqdxwYCHzypU07GynFpoNB7YwwD+/"
     "6QtAzSrMLfJ0C0FOnZwue7Ybmy1FLJJ8n6LZVpMnVgx+emdhzzkcSjjX2a0AB9vI0uz/oNdvE9OP5etF5CpAk0GpItT/"
     "CpLBu1GMSJazQbZFXo++y8Y6k37yaU/Uc87pWfDu/"
     "R1rBxeghHJDrI73B6+H68TntyjNaMD+ikYlRMZ+yqBFJ0yPXKbgVLKf+vCeaWRiItq9k1KECznhu2N8+4b+"
     "ESnG1R14Ye2oAeORlLwnk4PlC4i6DBukNrrwMuSJH19HTJZXJOZlpjAIbnmXKFbGo9gsrKwO6brouvXm9gVIlz+"
     "DToMupSHV7rMqv5p9O4uI1KzLMJxSFAp9sS+oanBq/8q0Y7Au1uCHvGBMJdih8xFQfvhhocNU/meSnYv3NWjr0d/"
     "4rWQnZw9rQLSWSRoQXubTVz7kEFILFZBF8piyrOf+8PqY7kDhtTd4+4xml/Ie2ZmKI+Go/2SuyV/"
     "fz1D5z3ItTALO1Rvddk6wrfhRQEUu5Mhd8eLX12TM7cBjgRmbrhGAb4ZaDQb3Ek5RiQ7dr6jlSGjG3aXSAzEtXHHxXJWB"
     "zjYm6pBtqyv/"
     "kCZWY+"
     "uDIIhugP4j8oEp9ngyOXMzU6boDKvrF7dEIEHiTS8Wy0KDYSMjzSfnJ9LTqFpIhv12jTAasxG6XjxFrUmtFIidAPX4pAq"
     "qd2l6JtxgvG217AzYopWrQBcsAK9uAkm6aleJy0OjN8PLL5t0ZKSBV9XM53ZtPuVS6BVQaVCx05aq0biovBzqs1D7TRuu"
     "3rY99yz4N2if/0QV/CPXCWkBQvhGZWIfUU8AeIi2D4XIsHYmn95GeDahuvxm/Pwh8G6AeR6C7/"
     "ct9+kQ7vdQ2+HEFlVaRzAnOlY7DtYBFe3jTPOkxW3jV12nyLio6XRywhDRGL+"
     "4vteswbvyNok4dn25pdMSO1EcoXLAfPT3vDPjDkpsx+u45F3saX+"
     "zkq7RkcHieZZikR1cvctXHxCdPjg9DYO2T56C7gGLFygxQldIDsEPnVJ3iAugrkJOuTNNSSLA+kxwIlVRpPd7D+"
     "k60KwD9JA694sAfPAlGjnpAY6Z7C42Q1ZWPVrJxIBjU8sW450ZaDzRd2UMryCCC2SKd9D0QAohWRC0UWoP0jINvSdrM77"
     "16xelOjhHUDsE3J35VO/9n+oFtzdNBKrbi/uU3JaJvQ6q8jT07OWBZrgyOU5Hh+c/"
     "HO2r1uGavB1ZccSQ3zruXMl9zMJ2UYedogK+P1GrqNtF6zZVPZb0OX/"
     "vyvXtbun8JevQ7dIjbWs6xsUY8kWbC7RRFOmRBT/XZSLGRuSUJlhhekqG/"
     "XFVSEOSiy67E2Z+j5rcx1Yjxy33E0wuINuTlZurWB+"
     "RsxfsP5UU8eJEcEdc0z6LU6F23J4dTL7DvzlAzPgvMZYjvdKvfcbOZExWN0Y82Fmt6eB/CWwqGP/"
     "YBVo3leI99oIMFMlL/6vJh/ovxlB5jnxhVKBNcSfnx4ITuOUeGIHqkJf8G9CM6SptfCLaMHuykG7bPYwne5+T/"
     "HCEVNrwNeH8xP50uz13OIUp4DBoa00KnWCAANcggNbJEbnLFYYTWVwCTAGf/4A2LGNw"},
    {"misc", "{\"published\":true}"},
    {"dev|@alice:example.org",
     "{\"devices\":{\"ALICEDEV\":{\"curve25519\":\"t+RpCOQZwKbwkRoEYy2yfmUnCwzmXHFBH3W1S9o0uSk\","
     "\"ed25519\":\"rBIhaOhVSikCHArc5F8zwuQsljpFljnW+euLijA0mzk\",\"cross_signed\":false}},"
     "\"tracked\":true,\"outdated\":false}"},
    {"olm|t+RpCOQZwKbwkRoEYy2yfmUnCwzmXHFBH3W1S9o0uSk|yYn6+2dNUyuuOKDBzooqanv/u6kZ03+k4n35zOthlaA",
     "{\"pickle\":\"W6lD7Xg7cDOCFRzEG8JDpjU0gA7+0Psspxhsv/hyUWk5HCytTZ97UwhL3rzE5/"
     "iyH3pPSWyFnCtAS74I0N09YwoncFmV65870+pHDssadbSMSvwuLe25aQ1MqjbsCHcw9gdAittPXdP+"
     "lJeT5gOiCCPYwOZokUebbL+/bWn13SbKjSdpWLP2e8rW7cZDB107vpNtJDjg9hcvzQ/"
     "CJob7KLUWhUPEansMghUPHDfDV9wThPy3JOEW4tMsEfZnCNNnXoWQL0URM0vZIkq/"
     "qM68ftkiDyzpBGue0ZfrZbiQBfG7NVb2/x7OYQ\",\"used\":1}"},
    {"seen", "[\"dcac74ef6fdc90986da695e441b48ffe\"]"},
    {"in|!r1:example.org|t+RpCOQZwKbwkRoEYy2yfmUnCwzmXHFBH3W1S9o0uSk|rOCmTMuSqOucaGOE30gQNPE0U12+"
     "mEt7ozc8tj+jmdw",
     "{\"room\":\"!r1:example.org\",\"sender_key\":\"t+RpCOQZwKbwkRoEYy2yfmUnCwzmXHFBH3W1S9o0uSk\","
     "\"id\":\"rOCmTMuSqOucaGOE30gQNPE0U12+mEt7ozc8tj+jmdw\",\"sender\":\"@alice:example.org\","
     "\"ed25519\":\"rBIhaOhVSikCHArc5F8zwuQsljpFljnW+euLijA0mzk\",\"pickle\":"
     "\"2OGlCn4uS4MdISyRMxQysbxLKrac5yqsKE0mdU8yQbCaPV0V2noN3x23QqN2bl+"
     "MS3W7qGBHQJUFDvRNrRTXMoXSL2wB3CXK1odUXN8k1PL+L2GmtLd76yzEROtxPD/"
     "+T1eI9yWB5Qz5ozLlLqrbPEHJF77D2RYFAGDZ6B28zM7QVrOKUpeb4c9xsvBB5p0w7r763WXyEXjE1tyBdUUOouAjzbzG"
     "Z4tRDxcOlJOS35y6qKNg6DBzsI2utZ0ISi6K5xpReC6nasOY7fEKKSHsv71wZ5Akjlx4EM2kbo7SFHpTtts7OYHCjHyQw"
     "KpdETc417JdIRjALcK0Ud+2s9hn7adxJZqdTBmGw2F0mg1HPKvvWEwUBwdAQcnP9Y+ch1PIETZkVY/"
     "is1kp4Kyzn34iMGnkQCi6KdEh\",\"idx\":{}}"},
};

#endif /* FB_FUZZ_MATRIX_CRYPTO_STATE_H */
