# The cloudify_ha pillar of kitchen.yml: pillar.example's shape for one CentOS 7 manager,
# cfy-mgr1.kitchen.test (kitchen.yml's salt_minion_id), of a three-manager cluster of which
# only that host exists: kitchen applies cloudify_ha.firewall and cloudify_ha.installer to it,
# which touch neither the other managers nor the database. Every key is documented in
# pillar.example; test/unit/test_kitchen.py checks this pillar passes the formula's plan for
# that minion.
---
cloudify_ha:
  packages:
    RedHat:
      # a stock CentOS 7's mirrorlist is gone (README, "EL7 today"): base, updates and extras
      # from the vault, written over CentOS-Base.repo's sections as on any CentOS 7 manager
      # (test/kitchen/Dockerfile pointed them there already, for yum and the Salt bootstrap)
      repos:
        - id: base
          name: CentOS-7.9.2009-base(vault)
          baseurl: http://vault.centos.org/7.9.2009/os/$basearch/
          gpgkey: file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7
          gpgcheck: true
        - id: updates
          name: CentOS-7.9.2009-updates(vault)
          baseurl: http://vault.centos.org/7.9.2009/updates/$basearch/
          gpgkey: file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7
          gpgcheck: true
        - id: extras
          name: CentOS-7.9.2009-extras(vault)
          baseurl: http://vault.centos.org/7.9.2009/extras/$basearch/
          gpgkey: file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7
          gpgcheck: true
      # the host's enabled repositories, the three above among them
      fromrepo: []
  clusters:
    kitchen:
      leader: cfy-mgr1
      managers:
        - name: cfy-mgr1
          minion_id: cfy-mgr1.kitchen.test
          private_ip: 10.0.0.11
          public_ip: 192.0.2.11
        - name: cfy-mgr2
          minion_id: cfy-mgr2.kitchen.test
          private_ip: 10.0.0.12
          public_ip: 192.0.2.12
        - name: cfy-mgr3
          minion_id: cfy-mgr3.kitchen.test
          private_ip: 10.0.0.13
          public_ip: 192.0.2.13
      admin:
        username: admin
        password: kitchen-admin-password
        tenant: default_tenant
      database:
        host: 10.0.0.5
        port: 5432
        name: cloudify_db
        username: cloudify
        password: kitchen-db-password
        postgres_password: kitchen-postgres-password
        # pillar.example's throwaway database PKI (its CA key is public: never use it elsewhere)
        ca_cert: |
          -----BEGIN CERTIFICATE-----
          MIIDbTCCAlWgAwIBAgIUDFCx0OeQtaweFm17CwK9mtw85fcwDQYJKoZIhvcNAQEL
          BQAwRTFDMEEGA1UEAww6Y2xvdWRpZnlfaGEgZXhhbXBsZSBkYXRhYmFzZSBDQSAo
          cHVibGljIGtleTogbmV2ZXIgdXNlIGl0KTAgFw0yNjEyMDcxMjMwMDhaGA8yMTI2
          MTExMzEyMzAwOFowRTFDMEEGA1UEAww6Y2xvdWRpZnlfaGEgZXhhbXBsZSBkYXRh
          YmFzZSBDQSAocHVibGljIGtleTogbmV2ZXIgdXNlIGl0KTCCASIwDQYJKoZIhvcN
          AQEBBQADggEPADCCAQoCggEBAKubVAfRSP9JYfIfQICvkVBS2Qoab7Ef5au3dyAs
          DQqpgysUKdeRPAz1+D9osSY4KxngxUtSid6XcCLqEbAwCV06ptUGK3UgS8kXtDSa
          OLE55jpgq/1FHZ7qinE98hbHlMcR5WteSIulAahFmTw26M26SwMwkrPAGmz6JMzm
          XTl5QhFgVEIc+xmUEA1WPMBWj2JN+kILpoBbTUJD3lgXDKHjthFt71/WMhpWrX4c
          LkoLchMy8lwdkt0Oob3S4XRsNNU7awQb4fWotvFcJxoCg6nOC5HvLV9nnqpLnqRX
          PL5pK8hUIwDGpqJjmNuYMceGadRbx19pCb9ZkkO943+IqPkCAwEAAaNTMFEwHQYD
          VR0OBBYEFKdDcizFTKZqX4YJvDVJwByYX6RzMB8GA1UdIwQYMBaAFKdDcizFTKZq
          X4YJvDVJwByYX6RzMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQELBQADggEB
          AAp2rtH/xAIaoklGLhJPBP85UtLAOeITCCbHi9KW/s1iJcKO/BGKw9YTxMrfNm33
          aYwy1xj4gB+gw+XIUEmVTAnkG4KhunIom/kIohfhA+UVlYlG+IOW36u1M/cDawuF
          jqmgATOfv/J2ElgbtYKOfi+SjEfpPxNZOlaoiNVXFVuWU7VwZpRG/37ir8y4Kcs9
          3CGhlt+GN2V2g8VN4teTcDUVbley33g9W2vmKIpOqsmndW2WH0eZ6opyLUAzKDVB
          0BHXsl/d4Z6KeoNKZ4goMeKF9U5kjv3WB6pfNhxwXm+nRzdwP9QZfN8uWRBxzd0B
          gigxWyq7ShUiacbjPzKwbXQ=
          -----END CERTIFICATE-----
        ca_key: |
          -----BEGIN RSA PRIVATE KEY-----
          MIIEpAIBAAKCAQEAq5tUB9FI/0lh8h9AgK+RUFLZChpvsR/lq7d3ICwNCqmDKxQp
          15E8DPX4P2ixJjgrGeDFS1KJ3pdwIuoRsDAJXTqm1QYrdSBLyRe0NJo4sTnmOmCr
          /UUdnuqKcT3yFseUxxHla15Ii6UBqEWZPDbozbpLAzCSs8AabPokzOZdOXlCEWBU
          Qhz7GZQQDVY8wFaPYk36QgumgFtNQkPeWBcMoeO2EW3vX9YyGlatfhwuSgtyEzLy
          XB2S3Q6hvdLhdGw01TtrBBvh9ai28VwnGgKDqc4Lke8tX2eeqkuepFc8vmkryFQj
          AMamomOY25gxx4Zp1FvHX2kJv1mSQ73jf4io+QIDAQABAoIBAAU5Tj6KrWkwB65C
          K0l/jrHeQ8Md+OZwbSJkDFlLXf5EGL0X+QoZ3rUaS7tKaZIbRZydDgRz98Rx4bT+
          YRl27OIMpgV4EZyYJhZyBUdQpocmlw6R4Mpt7y/mPd6inxr4alwA/HXfQeAWXs2L
          iNWfakjQ8fWf5edY4rUMjFA8dvwH2xd5f4gNL7DVCHzSReZQVsXsk7cJ3FEDuPAy
          P+zsCkigPK2c7NifrBom8u6Jbg1pAWWrs69wRRggFTvkMi5UVuXXdu61EVCHfcbz
          ZKZgSkJWWebaaus8PsrXwbSGMtKceAWNhkYjW5y4o2M7A0NhYt49ndRLmaPFQxX5
          TT7ZMg0CgYEA6fMQaHlF1eoCKXD3BYXATlyhqvwMxXZc1Mm3qmdTiMn6NX2AgEAv
          eXPbmljM4xA0ymCnvqFHfSRo3mhwOMlLdg8m0OT+0Xks9qSt8Le1eUKEJ1aZUrXh
          sWOoIh0PzlrjWcTBjGFstj5dH4yht4dtXjKWLF7wPSISKmzBbgI7HBMCgYEAu8gB
          QnV31gJvuflOkeBYxvSPvYziFvMl3wJ36Z7mQ3geM/1UarC3Lnip5q81TCULCOC5
          /lSSAacLea5Bq88eiNsUHiQ/EQ0gOBgs6pN0nDlFf3lF+LvaGgxwWC13gcokV/pk
          SWqoobhMx5nZzHQc3PiVODTFix+Jgl82j2QYcEMCgYEAijv5AgJGZXNz+5CoJTc2
          vha14BY2Zabei0z1nVaYYUcW9OxHNYC3jIgMxlKaHcDBsKMT+uvJFgShgmkrhiJK
          2GNziBMHDjcPfl0n+ghSzmejNqtQxTJ7PRmpix6o7EF//Nbplk0qszR+SdoK5Cq9
          UN+LJISkZzruiOriEGJ5EskCgYEAkBgv70GYzZ5dAcavZf1T4of0bS3YqGe43eJV
          Be6rH4bjFl4FE0G7r2tkZOJ58Y5TY2KfFuzqhV4bzinLtv1enwIN8/s4cesymBjl
          DrRMPT0teV4kNXRhLq/w3Zk2JWBqdyBrKHMyJ7b3JAuJN/y50U7nopPMKq/uox5R
          DcNvhWUCgYA/s5d9xULAEGnGBByLcuTOVM3QgOvsX1etHJEDZWlmmNZmneVTdsmp
          RCJbG7ogH9WrQ1mI7s/iLOnRXenvsIs7/WsTo1JPbAqFpgI48e0ZeqMmFPUp7LZq
          vLC3nhhnm6ZOA7pVNERcs4Pkw6w0r0+a0FkJ5QPMaeP6QFK6rK5eTA==
          -----END RSA PRIVATE KEY-----
        client_cert: |
          -----BEGIN CERTIFICATE-----
          MIIDSjCCAjKgAwIBAgIUNF94IadeVXK+PRt1Q4czuj+lGDUwDQYJKoZIhvcNAQEL
          BQAwRTFDMEEGA1UEAww6Y2xvdWRpZnlfaGEgZXhhbXBsZSBkYXRhYmFzZSBDQSAo
          cHVibGljIGtleTogbmV2ZXIgdXNlIGl0KTAgFw0yNjEyMDcxMjMwMDhaGA8yMTI2
          MTExMzEyMzAwOFowEzERMA8GA1UEAwwIY2xvdWRpZnkwggEiMA0GCSqGSIb3DQEB
          AQUAA4IBDwAwggEKAoIBAQCf1zTdjopGjaq2IqmlPsjeA8NelIXVWn8yrlPUswIL
          m8niVVeD8/MPE+f+XVCw3uk2UBZl4Rl8J1pTutPhiSvfQdacplziB0OkHZlYMuRV
          mH1tr7/VxRHGUwudSIrp5C5k2p1sOQPFWhFvADzOsF0hbZMZSuRoCUNx3JUuNROq
          fXCJTOsouPk47eT8ZSeFhAKVRpXSonbCC6ZMAy55Bn/zUk6A7MegK11fq+/hULIK
          XqBxshFlNDFM5eoDo4PX9Krwirb3feaM1zSeVbb/ruxzSlfiXfeUUv2ALMnqIakf
          lU8N4/1uXTVchFFPjFoaqBnmTij/aXKaGlX5ZKjIhYe3AgMBAAGjYjBgMAkGA1Ud
          EwQCMAAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0OBBYEFGKsG9MTz+4J+bg2
          GBT+Y6opfhh7MB8GA1UdIwQYMBaAFKdDcizFTKZqX4YJvDVJwByYX6RzMA0GCSqG
          SIb3DQEBCwUAA4IBAQBwNCsq7Q+w1wFZXLYCgclZmK/3eAmyBpD/sby32fDmlkwO
          r6yB/ie/CMClIGLkSDLaShWP4hbjRI+hUDCB9zsz7Jpv95kM6Am+V7Nx9vxqDzse
          qvjrj6Q9lM2KjW7L8pQJkaBixjH6B4MoD3mroNHBLRD9sOubRNEc6ubXr6qYMKOu
          qkNnzJ4OvI2Zf163XGTLLbp8XU709C5QRLR4Wi4+dQW78pUvJw7LMgHarXtmSgHB
          nscIG5F30Vnkou3wDMv7DlR+PdYz82WxBnCAVvx+FIAQuKYNs8rm6bT8fRFtzNEB
          M0iGhaGIMjErjYm8JKqp+pmn9hzm+tijMCsoSCLv
          -----END CERTIFICATE-----
        client_key: |
          -----BEGIN RSA PRIVATE KEY-----
          MIIEowIBAAKCAQEAn9c03Y6KRo2qtiKppT7I3gPDXpSF1Vp/Mq5T1LMCC5vJ4lVX
          g/PzDxPn/l1QsN7pNlAWZeEZfCdaU7rT4Ykr30HWnKZc4gdDpB2ZWDLkVZh9ba+/
          1cURxlMLnUiK6eQuZNqdbDkDxVoRbwA8zrBdIW2TGUrkaAlDcdyVLjUTqn1wiUzr
          KLj5OO3k/GUnhYQClUaV0qJ2wgumTAMueQZ/81JOgOzHoCtdX6vv4VCyCl6gcbIR
          ZTQxTOXqA6OD1/Sq8Iq2933mjNc0nlW2/67sc0pX4l33lFL9gCzJ6iGpH5VPDeP9
          bl01XIRRT4xaGqgZ5k4o/2lymhpV+WSoyIWHtwIDAQABAoIBAAESQ0jypOX5C4Wc
          PEdEaMl9VuigO3TSP/XUcXiis1gDz3JGS94TSGyDAayf/W8GSkl2LAR+2oq6dhcl
          hVawJz1zDEGkH7MTUGOaTS9+1EyroYriDGqtAPikeel7aH4CbMlMj5UHJOuINiks
          RhZqzPdaXN6Zf/6YDFwesHYcFuegH+TPdpak/3S0y2zd/7c2NPiJnrBHsE1T3j7o
          4Roa+g82CfDLzb78miIn3vh4bf9Wp0fQWgva0zU1BYFvqtrhp0a+t56cxGRI8AHE
          cmX31HUdMApTXoTxyntU7BSL4b3CyVc9NF6id1wTUCyr0HEcsgY0FSwdXTslI9Kc
          zznSnekCgYEA2npIhO8nowwzQp6JJXQA+fb94U6siyqU04uW/P3qaxHgBl8mndP5
          mQPatO1YdNFxmbEhLOceFsuiD0aj0/Oj18V1wqjQVQIJ7Mh3+NLSQfJxfl+HoCmt
          EsWtfTgUy+jlNXeVM4oFtnikX5/A6/gVKZwpMyo/BSj3c0MkKk0cYakCgYEAu0ra
          lTsptmevXVTaaseYArdpQtf4qpnQ7LrLzHYKnyrJY6u4GauPk/TmiArk0e9n+kIk
          m+Z2xrfp8jqXrXJOb58Ycb2/ryGjizMslJKDC43BXMBkRevhpQfOtqUUW8SMHQAc
          ChwlPeJv4pye2W3LTedibnm/urU6C23FhCoVOl8CgYEAz9fjY6vMzn1NysPdfybz
          wtlpP03EMgTJXtL+SiIZP9DaidU9fIprellDWDovm7qg0vDCueAJLPB+dP/j3UB8
          j0oHtK86upRc8sjn8WxGoHxP4kRpV0Iup5wtZuHSTwZ5/7qK02Qr+SKeZWYqd5Ik
          N9ibDVTUbUlC14F5R1DifjkCgYBsa26RiMgi0W7QxngR7CzxFZ+XlFJc3+HzyEaF
          u6d2cFxYmGVgZtIcwl5ZToUbik1Ur8llfkovyvNgx85aF5uUPjL2VPOLvBtiT2N1
          NkMqAwt2V+E0INJkqFpfnLxmSycY+qFAsP5WDqjaM/Q4xbg1BscSUOROfu51Azyd
          v4a+XQKBgG6Gff2nnsSR/VAqd4A6gFPDUAr7PT+yuTHb2KnnW35o/Wyvw65OiRre
          4xbH2H3DX4chXsp13N7i53K/EA3Z+Fyf7kiB64V151JyBV7cHW7RWeOYnmjcZjsK
          PxooXsu8jOApiIEROIRmraQsgpI8B16t5ITZa0ZrV0Q4STgg0Uah
          -----END RSA PRIVATE KEY-----
      installer:
        # the installer package, fetched by the minion over https and verified against its
        # CA store (4.5.5: the HA code of 4.6, cloudify-4.6.md). Cloudify published its
        # packages under repository.cloudifysource.org/cloudify/<version>/ga-release/, served
        # over https (its docs' download tables); this file was not fetched from here (no
        # internet): once you have it, pin it with source_hash: sha256=<its sha256sum>, which
        # the formula then checks before yum sees the file
        # yamllint disable-line rule:line-length
        source: https://repository.cloudifysource.org/cloudify/4.5.5/ga-release/cloudify-manager-install-4.5.5ga.rpm
        source_hash: ""
      firewall:
        enabled: true
        # the image has iptables (test/kitchen/Dockerfile), neither firewalld nor nft
        backend: auto
        rest_sources:
          - 10.0.0.20
